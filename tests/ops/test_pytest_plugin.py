"""The pytest plugin as a user meets it: the README's example, run by pytest in a fresh
directory (the plugin is found through its pytest11 entry point)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("### pytest plugin"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_example_passes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "test_orders.py").write_text(readme_example())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_orders.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_plugin_fixture_fails_a_broken_test(tmp_path) -> None:  # type: ignore
    (tmp_path / "test_bad.py").write_text(
        "import pika\n\n"
        "def test_bad(burrowmq):\n"
        "    conn = pika.BlockingConnection(pika.URLParameters(burrowmq.url))\n"
        "    conn.channel().queue_declare('q', passive=True)\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_bad.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "NOT_FOUND - no queue 'q' in vhost '/'" in proc.stdout


def test_process_fixture_leaks_nothing_under_w_error(tmp_path) -> None:  # type: ignore
    (tmp_path / "test_proc.py").write_text(
        "import pika\n\n"
        "def test_proc(burrowmq_process):\n"
        "    pika.BlockingConnection(pika.URLParameters(burrowmq_process.url)).close()\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = "
                                         "function\n")
    proc = subprocess.run([sys.executable, "-X", "dev", "-m", "pytest", "-q", "-W", "error",
                           "-p", "no:cacheprovider", "test_proc.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ResourceWarning" not in proc.stdout + proc.stderr


def test_fixtures_are_documented(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--fixtures", "-p",
                           "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    text = proc.stdout
    for name in ("burrowmq", "burrowmq_factory", "burrowmq_process"):
        head = re.search(rf"^{name} -- .*\n((?:    .*\n)+)", text, re.M)
        assert head, (name, text[-3000:])
        assert "no docstring available" not in head.group(1), name
