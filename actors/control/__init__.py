"""Changing what a host holds, from the `hutch` command or the control page: one set of
operations, run by the host itself while it runs (through its control socket) and by the
command, holding the data folder's lock, while it does not (docs/ARCHITECTURE.md, "The
control socket")."""
