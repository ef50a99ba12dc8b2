"""The contract between the host (`actors`) and a session's container (`container_runner`).

Nothing here imports either side: schemas, row and content types, the session-folder
layout and the session DB helpers with the invariants of docs/ARCHITECTURE.md built in.
"""
