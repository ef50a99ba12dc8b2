"""The control page: what the host holds, live in a browser, and the buttons to change it
(docs/ARCHITECTURE.md, "The control page")."""

from actors.control_page.server import ControlPage, ControlPageError

__all__ = ["ControlPage", "ControlPageError"]
