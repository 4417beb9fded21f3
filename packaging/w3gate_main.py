"""Entry point of the one-file binary (PyInstaller needs a script, not a console_scripts entry)."""

import sys

from w3gate.cli import main

if __name__ == "__main__":
    sys.exit(main())
