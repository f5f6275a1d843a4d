"""What the process and its machine look like: resident memory, memory limit, disk space,
file descriptors. Read from /proc and the C library when asked (a scrape, an API call), never
on the message path; every reader degrades to 0 where the platform has no answer.
"""

from __future__ import annotations

import os
import resource
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max",  # cgroup v2
                      "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v1


def host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cgroup_memory_limit(files: tuple[str, ...] = CGROUP_LIMIT_FILES) -> int | None:
    """The container's memory limit, or None when there is none ("max", or v1's huge value)."""
    for path in files:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
        return None
    return None


def total_memory() -> int:
    """The memory this process may use: the cgroup limit when there is one, not the host's."""
    host = host_memory()
    limit = cgroup_memory_limit()
    if limit is not None and (not host or limit < host):
        return limit
    return host


def memory_limit(cfg: Config) -> int:
    if cfg.vm_memory_high_watermark_absolute:
        return cfg.vm_memory_high_watermark_absolute
    return int(total_memory() * (cfg.vm_memory_high_watermark_relative or 0.4))


def disk_free(path: str) -> int:
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        return shutil.disk_usage(path or "/").free
    except OSError:
        return 0


def disk_free_limit(cfg: Config) -> int:
    if cfg.disk_free_limit_relative is not None:
        return int(total_memory() * cfg.disk_free_limit_relative)
    return cfg.disk_free_limit


def fd_used() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def fd_total() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
