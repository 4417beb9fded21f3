"""The shipped systemd unit (packaging/systemd/w3gate@.service) is one systemd accepts, and hands w3gate the
secret under the name w3gate reads. systemd cannot run as PID 1 here: the unit is checked, not started."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from w3gate.crust.settings import CREDENTIAL_NAME

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

UNIT = REPO / "packaging" / "systemd" / "w3gate@.service"


def test_unit_loads_the_credential_w3gate_reads() -> None:
    text = UNIT.read_text()
    assert re.search(rf"^LoadCredential={CREDENTIAL_NAME}:/", text, re.M)
    assert "W3GATE_CRUST_SEED" not in text  # never in the environment: /proc/PID/environ, systemctl show


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian: systemd)")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # an instance of the template, with ExecStart pointing at an executable that exists here
    w3gate = Path(sys.executable).with_name("w3gate")
    assert w3gate.exists()
    unit = tmp_path / "w3gate@1.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/w3gate", str(w3gate)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # a warning (an unknown or misspelled directive) is printed, not failed on: prove the check sees one
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHomme=yes"))
    bad = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "ProtectHomme" in bad.stderr
