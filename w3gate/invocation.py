"""How the user runs this program, so that the commands w3gate prints can be pasted as they are.

``pip install`` into a virtual environment puts ``w3gate`` in ``.venv/bin``, which is not on ``PATH``
until the environment is activated: a bare ``w3gate token ...`` then answers "command not found".
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def own_command() -> str:
    """``w3gate`` when that name on ``PATH`` is this program; else its path (the frozen binary's, the
    console script's), or ``<python> -m w3gate`` when run as a module."""
    if getattr(sys, "frozen", False):  # PyInstaller: argv[0] may be a bare name or a relative path
        path = sys.executable
    elif not sys.argv or not sys.argv[0] or Path(sys.argv[0]).name in ("__main__.py", "-m", "-c"):
        return f"{shlex.quote(sys.executable)} -m w3gate"
    else:
        path = sys.argv[0]
    name = Path(path).name
    found = shutil.which(name)
    try:
        if found and os.path.samefile(found, path):
            return name
    except OSError:  # the program was moved or removed since it started: show its path
        pass
    return shlex.quote(os.path.abspath(path))
