"""The Docker image, built from docker/Dockerfile and run for real on a private dockerd.

CI (CI=true) always runs this module; on a developer's machine it is opt-in
(``BURROWMQ_DOCKER_TESTS=1``: it needs root, dockerd and debootstrap, and about two minutes
the first time a day). What is checked is what a user of the image meets: the HEALTHCHECK
reaching ``healthy`` (and not depending on the admin password or the management port),
``RABBITMQ_DEFAULT_USER`` / ``_PASS``, a volume surviving a container restart, ``docker stop``
giving connected clients ``320 CONNECTION_FORCED`` and exiting 0, a stock client (pika)
connecting through ``-p``, ``burrowctl`` through ``docker exec``, the image's size, and
``docker/compose.yaml`` brought up with its healthcheck-gated service where a compose tool is
installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from dockerd import Engine, base_image
from outside import in_ci, missing, require_program

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_MANAGEMENT_IMAGE_MB = 250  # rabbitmq:3.13-management, uncompressed, as reported


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if not in_ci() and os.environ.get("BURROWMQ_DOCKER_TESTS") != "1":
        pytest.skip("builds and runs the Docker image (~2 min): set BURROWMQ_DOCKER_TESTS=1 "
                    "to run it here; CI always does")
    require_program("dockerd", package="docker.io")
    require_program("debootstrap")
    if os.geteuid() != 0:
        missing("dockerd needs root")
    # a short path: dockerd's and containerd's Unix sockets live under it
    root = Path(f"/tmp/bmq-docker-{uuid.uuid4().hex[:8]}")
    started = Engine.start(root)
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = base_image(engine, tmp_path_factory.mktemp("base"))
    tag = "burrowmq-test:latest"
    began = time.monotonic()
    built = engine.run("build", "-f", "docker/Dockerfile", "--build-arg", f"BASE={base}", "-t",
                       tag, ".", cwd=ROOT, timeout=900).stdout.decode()
    print(f"\nimage built in {time.monotonic() - began:.0f} s")
    # .dockerignore keeps .venv/, data/ and the tests out of the build context
    sent = re.search(r"Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)", built)
    assert sent, built[:2000]
    size = float(sent.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[sent.group(2)]
    assert size < 3e6, sent.group(0)
    return tag


def health(engine: Engine, name: str) -> str:
    return engine.out("inspect", "-f", "{{.State.Health.Status}}", name)


def wait_healthy(engine: Engine, name: str, timeout: float = 60.0) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        status = health(engine, name)
        if status == "healthy":
            return time.monotonic() - began
        if engine.out("inspect", "-f", "{{.State.Running}}", name) != "true":
            break
        time.sleep(0.25)
    logs = engine.run("logs", name, check=False).stdout.decode(errors="replace")
    raise AssertionError(f"{name} not healthy ({health(engine, name)}):\n{logs[-3000:]}")


def host_port(engine: Engine, name: str, port: int) -> int:
    mapping = engine.out("port", name, f"{port}/tcp").splitlines()[0]
    assert mapping.startswith("127.0.0.1:"), mapping  # published on loopback only
    return int(mapping.rsplit(":", 1)[1])


def connect(port: int, user: str, password: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters("127.0.0.1", port,
                                       credentials=pika.PlainCredentials(user, password),
                                       connection_attempts=20, retry_delay=0.25)
    return pika.BlockingConnection(params)


def run_container(engine: Engine, image: str, name: str, volume: str, *env: str) -> None:
    args = ["run", "-d", "--name", name, "-p", "127.0.0.1::5672", "-p", "127.0.0.1::15672",
            "-v", f"{volume}:/var/lib/burrowmq"]
    for item in env:
        args += ["-e", item]
    engine.run(*args, image)


def test_image_runs_keeps_data_and_stops_cleanly(engine: Engine, image: str) -> None:
    name, volume = "bmq-main", "bmq-data"
    run_container(engine, image, name, volume, "RABBITMQ_DEFAULT_USER=app",
                  "RABBITMQ_DEFAULT_PASS=s3cret")
    took = wait_healthy(engine, name)
    print(f"\nhealthy {took:.1f} s after docker run")
    amqp = host_port(engine, name, 5672)
    conn = connect(amqp, "app", "s3cret")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("kept", durable=True)
    ch.basic_publish("", "kept", b"survives", pika.BasicProperties(delivery_mode=2))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(amqp, "guest", "guest")

    stopper = threading.Thread(target=engine.run, args=("stop", "-t", "30", name))
    stopper.start()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            conn.process_data_events(0.2)
    stopper.join(60)
    assert (info.value.reply_code, info.value.reply_text) == (
        320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")
    assert engine.out("inspect", "-f", "{{.State.ExitCode}}", name) == "0"
    logs = engine.run("logs", name).stdout.decode() + engine.run("logs", name).stderr.decode()
    assert "received SIGTERM, shutting down" in logs
    assert "Traceback" not in logs

    engine.run("start", name)
    wait_healthy(engine, name)
    conn = connect(host_port(engine, name, 5672), "app", "s3cret")
    method, _props, body = conn.channel().basic_get("kept", auto_ack=True)
    assert body == b"survives"
    conn.close()
    status = engine.out("exec", name, "burrowctl", "status")
    assert "Node data directory: /var/lib/burrowmq" in status
    engine.run("rm", "-f", name)


def test_healthcheck_needs_no_password_nor_management_port(engine: Engine, image: str) -> None:
    """A volume made with one password, a container started with another and with the
    management API off: still healthy, and burrowctl still works inside it."""
    volume = "bmq-other"
    run_container(engine, image, "bmq-first", volume, "RABBITMQ_DEFAULT_USER=app",
                  "RABBITMQ_DEFAULT_PASS=first")
    wait_healthy(engine, "bmq-first")
    engine.run("rm", "-f", "bmq-first")
    run_container(engine, image, "bmq-second", volume, "RABBITMQ_DEFAULT_USER=app",
                  "RABBITMQ_DEFAULT_PASS=second", "RABBITMQ_MANAGEMENT_PORT=0")
    wait_healthy(engine, "bmq-second")
    users = engine.out("exec", "bmq-second", "burrowctl", "list_users", "-s")
    assert users.split("\t")[0] == "app"
    connect(host_port(engine, "bmq-second", 5672), "app", "first").close()  # the volume's
    engine.run("rm", "-f", "bmq-second")


def test_image_size(engine: Engine, image: str) -> None:
    size = int(engine.out("image", "inspect", "-f", "{{.Size}}", image))
    layers = [line.split("|", 1) for line in engine.out(
        "history", "--human=false", "--no-trunc", "--format", "{{.Size}}|{{.CreatedBy}}",
        image).splitlines()]
    ours = sum(int(size) for size, created in layers if created)  # the base's has no command
    print(f"\nimage {size / 1e6:.0f} MB = base {(size - ours) / 1e6:.0f} MB + burrowmq "
          f"{ours / 1e6:.0f} MB (local Debian bookworm base); rabbitmq:3.13-management is about "
          f"{RABBITMQ_MANAGEMENT_IMAGE_MB} MB")
    assert ours < 60e6, ours
    assert size < RABBITMQ_MANAGEMENT_IMAGE_MB * 1e6, size


def test_compose_file(engine: Engine, image: str) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        missing("docker-compose is not installed (apt-get install docker-compose)")
    engine.run("tag", image, "burrowmq:latest")
    from broker.ops.pytest_plugin import free_port

    env = {**engine.env(), "BURROWMQ_AMQP_PORT": str(free_port()),
           "BURROWMQ_MANAGEMENT_PORT": str(free_port()),
           "BURROWMQ_PROMETHEUS_PORT": str(free_port())}
    for var in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
        env.pop(var, None)
    base = [str(compose), "-p", "bmqcompose", "-f", str(ROOT / "docker/compose.yaml")]

    def compose_run(*args: str) -> str:
        proc = subprocess.run([*base, *args], env=env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr

    try:
        began = time.monotonic()
        compose_run("up", "-d", "--no-build")  # returns once the worker could start
        print(f"\ncompose up (broker healthy, worker started) in "
              f"{time.monotonic() - began:.1f} s")
        deadline = time.monotonic() + 30
        while "broker is ready" not in compose_run("logs", "worker"):
            assert time.monotonic() < deadline
            time.sleep(0.25)
        ports = engine.out("port", "bmqcompose_burrowmq_1")
        assert ports and all(line.split(" -> ")[1].startswith("127.0.0.1:")
                             for line in ports.splitlines()), ports
        connect(int(env["BURROWMQ_AMQP_PORT"]), "guest", "guest").close()
    finally:
        compose_run("down", "-v")
