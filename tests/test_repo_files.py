"""What a merge can leave behind in the checkout: conflict markers in tracked files (a README
that shows them, a CI script bash cannot parse). Checked on the files git tracks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file() and path.suffix not in {".png", ".whl", ".gz", ".so"}:
            files.append(path)
    return files


def test_no_merge_conflict_markers() -> None:
    bad = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for m in MARKER.finditer(text):
            bad.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not bad, "merge conflict markers: " + ", ".join(bad)


def test_ci_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
