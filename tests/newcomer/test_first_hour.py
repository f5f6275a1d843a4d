"""A newcomer's first hour, scripted: a fresh clone, the README's commands, the CLIs on PATH,
a client, the definitions round trip, Ctrl-C; and ``make test`` on a machine without
chromium. Slow (it creates a venv: about a minute): ``pytest -m slow tests/newcomer``.

The broker's ports are ephemeral (``make run PORT=...`` and the RABBITMQ_*_PORT variables) and
HOME is a temporary directory, so the default data directory is the test's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pika
import pytest

from broker.ops.pytest_plugin import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def sh(command: str, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("newcomer") / "burrowmq"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def newcomer_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BURROWMQ_", "BURROWCTL_", "RABBITMQ_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), **extra)
    env.pop("XDG_DATA_HOME", None)
    return env


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "make run exited"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_readme_first_steps(clone: Path, home: Path) -> None:
    env = newcomer_env(home)
    made = sh("make venv", clone, env, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    port, mgmt = free_port(), free_port()
    run_env = newcomer_env(home, RABBITMQ_MANAGEMENT_PORT=str(mgmt),
                           RABBITMQ_PROMETHEUS_PORT=str(free_port()))
    log = (clone.parent / "make-run.log").open("w")
    proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=clone, env=run_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 20
        while "Server startup complete" not in (clone.parent / "make-run.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # a second broker on the same port: one line, the port and the setting that chose it
        second = sh(f"make run PORT={port} DATA_DIR=other", clone, run_env)
        assert second.returncode != 0
        assert f"burrowmq: error: cannot listen on 127.0.0.1:{port} for AMQP: address already "\
               f"in use (another broker or program listens there); port {port} was set by " \
               "--port" in second.stderr, second.stderr
        (clone / "typo.conf").write_text("listners.tcp.default = 5673\n")
        typo = sh(".venv/bin/burrowmq --config-file typo.conf", clone, env)
        assert (typo.returncode, typo.stderr) == (
            78, "burrowmq: error: typo.conf:1: You've tried to set listners.tcp.default, but "
                "there is no setting with that name. Did you mean one of these? "
                "listeners.tcp.default, listeners.ssl.default\n")
        assert sh(".venv/bin/burrowmq --version", clone, env).stdout.startswith("burrowmq ")
        # README: ". .venv/bin/activate" puts the CLIs on PATH; the control socket in the
        # default data directory needs no password
        status = sh(". .venv/bin/activate && burrowctl await_startup --timeout 20 && "
                    "burrowctl status", clone, env)
        assert status.returncode == 0, status.stdout + status.stderr
        data_dir = home / ".local/share/burrowmq"
        assert f"Node data directory: {data_dir}" in status.stdout
        bare = sh(".venv/bin/burrowctl list_queues", clone, env)
        assert bare.returncode == 0 and "Listing queues for vhost / ..." in bare.stdout

        conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:"
                                                          f"{port}/"))
        ch = conn.channel()
        ch.queue_declare("hello", durable=True)
        ch.basic_publish("", "hello", b"hi")
        conn.close()
        listed = sh(".venv/bin/burrowctl list_queues name messages -s", clone, env)
        assert listed.stdout == "hello\t1\n"

        exported = sh(f".venv/bin/burrowmqadmin -P {mgmt} export defs.json", clone, env)
        assert exported.returncode == 0 and (clone / "defs.json").exists(), exported.stderr
        imported = sh(f".venv/bin/burrowmqadmin -P {mgmt} import defs.json", clone, env)
        assert imported.returncode == 0, imported.stderr
        helped = sh(".venv/bin/burrowctl --help", clone, env)
        assert "join_cluster" in helped.stdout and helped.returncode == 0
        wrong = sh(".venv/bin/burrowctl list_quees", clone, env)
        assert wrong.returncode == 64 and "Command 'list_quees' not found." in wrong.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in make run's terminal
        code = proc.wait(30)
        log.close()
    text = (clone.parent / "make-run.log").read_text()
    assert "Traceback" not in text, text
    for part in (" node           : rabbit@", f" data dir       : {home}/.local/share/burrowmq",
                 "Created user 'guest'", f"started TCP listener on 127.0.0.1:{port}",
                 "Server startup complete; 2 plugins started."):
        assert part in text, (part, text)
    assert code in (0, 2, -signal.SIGINT), (code, text)  # make itself dies of the SIGINT
    assert "broker stopped" in text


def test_make_test_without_chromium_skips_with_the_reason(clone: Path, home: Path) -> None:
    tools = clone.parent / "bin"
    tools.mkdir(exist_ok=True)
    for name in ("make", "sh", "bash", "python3", "env", "git"):
        found = shutil.which(name)
        if found and not (tools / name).exists():
            (tools / name).symlink_to(found)
    env = newcomer_env(home, PATH=str(tools))
    env.pop("CI", None)
    made = sh("make test PYTEST_ARGS=tests/ops/test_ui_overview.py", clone, env, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "SKIPPED" in made.stdout and "chromium is not installed" in made.stdout, made.stdout
    in_ci = sh("CI=true make test PYTEST_ARGS=tests/ops/test_ui_overview.py", clone, env,
               timeout=600)
    assert in_ci.returncode != 0 and "CI=true: .ci/run must install it" in in_ci.stdout
