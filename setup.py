"""Optional C acceleration: protocol/_fast_c.pyx, compiled when Cython and a C compiler are
there. Without them (or with BURROWMQ_NO_EXTENSIONS=1) the install still succeeds and the
broker runs on the pure-Python reference (protocol/_fast_py.py), as aiohttp and yarl do.
Everything else is in pyproject.toml."""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the extensions if possible; a failure is a warning, never a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler: the pure-Python path runs
            _warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            _warn(exc)


def _warn(exc: Exception) -> None:
    print(f"burrowmq: the C acceleration was not built ({exc}); using the pure-Python path",
          file=sys.stderr)


def extensions() -> list[Extension]:
    if os.environ.get("BURROWMQ_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn(ImportError("Cython is not installed"))
        return []
    try:
        return cythonize([Extension("protocol._fast_c", ["protocol/_fast_c.pyx"])],
                         compiler_directives={"language_level": 3}, quiet=True)
    except Exception as exc:  # noqa: BLE001
        _warn(exc)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
