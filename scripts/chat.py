"""Chat with your agent from a terminal, through the host's local chat socket.

    python scripts/chat.py [--socket PATH] [--name NAME] [--chat ID]

Type a line and press Enter to send it. When the assistant asks a question, answer with
the option's number or its text. Ctrl-D quits once the host has taken what you sent.
The client is `actors/cli/chat.py` (also `hutch chat`); it uses the standard library only,
so this file runs with any Python 3.11, with or without the package installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts scripts/ on the path, not the repository that holds `actors`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.cli.chat import main

if __name__ == "__main__":
    sys.exit(main())
