"""Entry point of the one-file binary (PyInstaller needs a script, not a console_scripts entry)."""

import multiprocessing
import sys

from w3gate.cli import main

if __name__ == "__main__":
    # a plugin using multiprocessing with the "spawn"/"forkserver" start methods re-executes the binary:
    # this makes that child run its task instead of a second w3gate
    multiprocessing.freeze_support()
    sys.exit(main())
