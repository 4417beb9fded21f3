"""The official conformance suite (@ipfs-shipyard/pinning-service-compliance) against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import SHARED, machine_lock

TOOL = SHARED / "tools" / "psa-compliance"
pytestmark = pytest.mark.compliance


@pytest.mark.skipif(not TOOL.exists(), reason=f"{TOOL} not found (set W3GATE_SHARED_DIR)")
def test_conformance_suite_passes_9_of_9(start_server, token, tmp_path) -> None:
    assert shutil.which("npm"), "the conformance suite needs node and npm"
    server = start_server()
    report = tmp_path / "report.md"
    with machine_lock("psa-compliance"):  # the tool writes its report to one place in its install
        proc = subprocess.run(
            [str(TOOL), server.psa_url, token.removeprefix("Bearer ")],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PSA_COMPLIANCE_REPORT": str(report)},
        )
    summary = [line for line in proc.stdout.splitlines() if line.startswith("psa-compliance:")]
    detail = report.read_text()[-6000:] if report.exists() else proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"{summary}\n{detail}"
    assert summary and "9 passed, 0 failed of 9" in summary[-1]
