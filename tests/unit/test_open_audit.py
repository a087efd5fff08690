"""The suite's guard against reading outside the repository catches what it is for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO


def test_a_file_beside_the_checkout_is_caught_even_inside_an_allowed_folder(tmp_path: Path) -> None:
    checkout, beside = tmp_path / "chat2crm", tmp_path / "sibling"
    checkout.mkdir()
    beside.mkdir()
    (checkout / "own.txt").write_text("ours")
    (beside / "vendor.yaml").write_text("theirs")
    log = tmp_path / "audit.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "open_audit"), "CHAT2CRM_OPEN_AUDIT": str(log),
           # the temporary folder is allowed (as in the suite), yet the checkout's siblings are not
           "CHAT2CRM_OPEN_AUDIT_ALLOW": os.pathsep.join([str(tmp_path), sys.prefix, sys.base_prefix, "/usr", "/etc"]),
           "CHAT2CRM_OPEN_AUDIT_HOME": str(checkout), "CHAT2CRM_OPEN_AUDIT_DENY": str(tmp_path)}
    code = ("import os, pathlib; pathlib.Path('own.txt').read_text(); pathlib.Path('../sibling/vendor.yaml').read_text();"
            "os.listdir('../sibling')")
    subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert [line.split()[1:3] for line in lines] == [["open", str(beside / "vendor.yaml")], ["os.listdir", str(beside)]]


def test_this_process_is_watched() -> None:
    """The suite's own process has the hook, and child processes get it through PYTHONPATH."""
    assert os.environ["CHAT2CRM_OPEN_AUDIT"] and Path(os.environ["CHAT2CRM_OPEN_AUDIT"]).exists()
    assert str(REPO / "tests" / "open_audit") in os.environ["PYTHONPATH"].split(os.pathsep)
    assert os.environ["CHAT2CRM_OPEN_AUDIT_HOME"] == str(REPO)
