"""A private Docker engine for the image tests (not a test module), and the base image they
build on.

``Engine.start(tmp)``: Debian's dockerd in the background with its own data root, exec root,
pid file and Unix socket under ``tmp`` (nothing shared with another engine on the machine),
stopped by its PID in ``stop``. ``base_image(engine)``: no registry is reachable, so the base
is a Debian bookworm made with ``debootstrap --variant=minbase`` from the mirror apt already
uses, with Python 3 and venv, and the host's CA bundle (HTTPS from RUN steps goes through the
same certificates as the host's). The tarball is cached per day under
``$BURROWMQ_DOCKER_CACHE`` (default ``~/.cache/burrowmq/docker``), so CI makes it once a day;
``docker import`` of a cached tarball takes seconds.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def docker_cli() -> str | None:
    """The client that matches Debian's dockerd, else any ``docker`` on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


@dataclass
class Engine:
    root: Path
    process: subprocess.Popen
    cli: str

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    @classmethod
    def start(cls, root: Path, timeout: float = 60.0) -> Engine:
        dockerd = shutil.which("dockerd")
        cli = docker_cli()
        assert dockerd and cli, "dockerd and docker are needed (apt-get install docker.io)"
        root.mkdir(parents=True, exist_ok=True)
        log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - handed to the child
        with log:
            process = subprocess.Popen(
                [dockerd, f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
                 f"--pidfile={root / 'dockerd.pid'}", f"--host=unix://{root / 'docker.sock'}",
                 "--storage-driver=overlay2", "--exec-opt=native.cgroupdriver=cgroupfs"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        engine = cls(root, process, cli)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {process.returncode}: "
                                   f"{engine.log_tail()}")
            if engine.run("version", check=False, timeout=10).returncode == 0:
                return engine
            time.sleep(0.2)
        engine.stop()
        raise RuntimeError(f"dockerd did not answer in {timeout:.0f} s: {engine.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "dockerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""

    def env(self) -> dict[str, str]:
        # The legacy builder: Debian's 20.10 engine has no buildx, and --build-arg is all the
        # tests need from a build.
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0",
                "DOCKER_CONFIG": str(self.root / "client-config")}

    def run(self, *args: str, check: bool = True, timeout: float = 120.0,
            input: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.cli, *args], env=self.env(), capture_output=True,
                              timeout=timeout, input=input, cwd=cwd)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}:\n"
                               f"{proc.stdout.decode(errors='replace')[-3000:]}\n"
                               f"{proc.stderr.decode(errors='replace')[-3000:]}")
        return proc

    def out(self, *args: str, timeout: float = 120.0) -> str:
        return self.run(*args, timeout=timeout).stdout.decode().strip()

    def stop(self) -> None:
        """Remove what the tests started, then stop dockerd by its PID (SIGTERM, then KILL)."""
        if self.process.poll() is None:
            ids = self.run("ps", "-aq", check=False, timeout=30).stdout.decode().split()
            if ids:
                self.run("rm", "-f", "-v", *ids, check=False, timeout=60)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # overlay mounts are gone with the engine; what is left are plain files
        subprocess.run(["rm", "-rf", str(self.root / "data"), str(self.root / "exec")],
                       check=False, timeout=120)


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in match.group(1):
                return match.group(1)
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M):
            if "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def cache_dir() -> Path:
    base = os.environ.get("BURROWMQ_DOCKER_CACHE") or \
        str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "burrowmq" /
            "docker")
    return Path(base)


def base_tarball(work: Path) -> Path:
    """Today's base root filesystem as a tarball, made once a day and cached."""
    today = datetime.date.today().strftime("%Y%m%d")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{DEBIAN_SUITE}-minbase-python-{today}.tar"
    if tarball.exists():
        return tarball
    for old in cache.glob(f"{DEBIAN_SUITE}-minbase-python-*.tar"):
        old.unlink()  # an older day's: keep one
    assert shutil.which("debootstrap"), "debootstrap is needed (apt-get install debootstrap)"
    rootfs = work / "rootfs"
    proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                           DEBIAN_SUITE, str(rootfs), debian_mirror()],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"debootstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    # The host's CAs: a TLS-inspecting proxy between this machine and the registries is then
    # trusted inside the container as it is outside.
    if HOST_CA_BUNDLE.exists():
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    if HOST_CA_DIR.is_dir():
        shutil.copytree(HOST_CA_DIR, rootfs / "usr/local/share/ca-certificates",
                        dirs_exist_ok=True)
    # What an image does not need (as slim images drop it): apt's lists and archives, docs,
    # manual pages, translations. Keeps the base near python:3.12-slim's size.
    for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man",
                 "usr/share/locale", "usr/share/info"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
        (rootfs / junk).mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True,
                   timeout=600)
    partial.rename(tarball)
    subprocess.run(["rm", "-rf", str(rootfs)], check=False, timeout=120)
    return tarball


def base_image(engine: Engine, work: Path) -> str:
    """A local image tag to pass as ``--build-arg BASE=``."""
    tarball = base_tarball(work)
    tag = f"burrowmq-test-base:{tarball.stem.rsplit('-', 1)[-1]}"
    with tarball.open("rb") as f:
        subprocess.run([engine.cli, "import",
                        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                    "/sbin:/bin",
                        "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                        "--change", 'CMD ["python3"]', "-", tag],
                       stdin=f, env=engine.env(), check=True, capture_output=True, timeout=600)
    return tag
