"""`python -m actors.cli`: the `hutch` command without its console script."""

from actors.cli import main

if __name__ == "__main__":
    main()
