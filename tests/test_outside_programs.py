"""The rule for tests that need an outside program: skipped with the reason on a developer's
machine, failed in CI (CI=true), checked on a throwaway test run by pytest itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs.py").write_text(
        "from outside import require_program\n\n"
        "def test_needs_a_program():\n"
        "    require_program('burrowmq-no-such-program', package='nothing')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(TESTS)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                           "no:cacheprovider", "test_needs.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_missing_program_skips_locally_with_the_reason(tmp_path) -> None:  # type: ignore
    proc = run(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
    assert "burrowmq-no-such-program is not installed (apt-get install nothing); .ci/run " \
           "installs it" in proc.stdout


def test_missing_program_fails_in_ci(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = run(tmp_path, "true")
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout
    assert "CI=true: .ci/run must install it" in proc.stdout
