"""Outside programs some tests need (chromium, openssl, etcd, haproxy, docker).

``require_program`` returns the program's path. When it is missing the test is skipped with
the reason (``make test`` prints it, ``-rs``) on a developer's machine, and fails under CI
(``CI=true``), where ``.ci/run`` installs every one of them: a missing program must never
turn a CI run green by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(f"{reason}; .ci/run installs it")


def require_program(*names: str, package: str | None = None) -> str:
    """The first of ``names`` on PATH (skip locally / fail in CI when none is)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    missing(f"{names[0]} is not installed (apt-get install {package or names[0]})")
    raise AssertionError("unreachable")
