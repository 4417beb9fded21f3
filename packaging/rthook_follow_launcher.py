"""PyInstaller runtime hook: the service stops cleanly when its one-file launcher is killed.

A one-file binary runs as two processes: the launcher (which unpacks, forwards SIGTERM/SIGINT and cleans
up) and its child, the service. A ``kill -9`` of the launcher, which is what a supervisor or a test
harness tracking one PID does, would otherwise leave the service running as an orphan, still holding its
port and its database. The kernel is asked to send the service SIGTERM when the launcher dies: it then
shuts down as on any SIGTERM and exits 0.
"""

import os
import sys


def _follow_launcher() -> None:
    if not sys.platform.startswith("linux"):
        return
    meipass = getattr(sys, "_MEIPASS", None)
    executable = os.path.realpath(sys.executable)
    if not meipass or os.path.dirname(executable) == os.path.realpath(meipass):
        return  # not a one-file build: there is no launcher
    launcher = os.getppid()
    try:
        if os.readlink(f"/proc/{launcher}/exe") != executable:
            return  # started some other way
    except OSError:
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        return
    if os.getppid() != launcher:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


_follow_launcher()
del _follow_launcher
