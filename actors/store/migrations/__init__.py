"""Numbered SQL migrations for the central DB, shipped as package data.

Files are named `NNN_description.sql`; `actors.store.db` applies each version once, in
order, and never edits a file once it has shipped (add a new number instead).
"""
