"""Standalone benchmark of the disk store (not a test): ``python -m storage.perf``.

Measures, for N x S-byte persistent messages in one durable lazy queue store:
- fill: pushes on an asyncio loop, yielding every ~1 ms of loop time and registering one
  ``when_durable`` confirm callback per slice (what publisher confirms do), until the last
  confirm arrives;
- RSS growth over the fill (VmRSS from /proc/self/status);
- reopen: close, then open again (recovery), and a crash-style reopen (no seal, no index);
- drain: shift + ack of everything, then disk use left behind.

Targets: fill >= 25k msg/s, drain >= 25k msg/s, RSS growth <= 64 MB, reopen <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from pathlib import Path

from .message import Entry, Message
from .message_store import SegmentQueueStore
from .sync import GroupCommit

PERSISTENT = b"\x10\x00\x02"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


async def fill(store: SegmentQueueStore, gcommit: GroupCommit, count: int, size: int,
               slice_s: float) -> tuple[float, int]:
    body = b"x" * size
    confirmed = [0]
    loop = asyncio.get_running_loop()
    start = loop.time()
    seq = 0
    while seq < count:
        deadline = time.perf_counter() + slice_s
        first = seq
        while seq < count:
            seq += 1
            store.push(Entry(seq, Message("amq.direct", "perf", PERSISTENT, body, True)))
            if not seq & 63 and time.perf_counter() >= deadline:
                break

        def count_confirmed(ok: bool, n: int = seq - first) -> None:
            confirmed[0] += n

        gcommit.when_durable(count_confirmed)
        await asyncio.sleep(0)
    await gcommit.sync()
    assert confirmed[0] == count, (confirmed[0], count)
    return loop.time() - start, gcommit.fsyncs


async def drain(store: SegmentQueueStore, slice_s: float) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    done = 0
    while True:
        deadline = time.perf_counter() + slice_s
        entry = None
        while True:
            entry = store.shift()
            if entry is None:
                break
            store.ack(entry)
            done += 1
            if not done & 63 and time.perf_counter() >= deadline:
                break
        await asyncio.sleep(0)
        if entry is None:
            break
    return loop.time() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--mode", default="lazy", choices=("lazy", "default"))
    parser.add_argument("--slice-ms", type=float, default=1.0)
    parser.add_argument("--dir", help="parent directory for the data (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the data")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="burrowmq-perf-", dir=args.dir))
    path = root / "queue"
    slice_s = args.slice_ms / 1000
    try:
        gc.collect()
        rss0 = rss_mb()
        loop = asyncio.new_event_loop()
        gcommit = GroupCommit(loop)
        store = SegmentQueueStore(path, mode=args.mode, group_commit=gcommit)
        seconds, fsyncs = loop.run_until_complete(
            fill(store, gcommit, args.count, args.size, slice_s))
        gc.collect()
        rss1 = rss_mb()
        print(f"fill:   {args.count} x {args.size} B persistent ({args.mode}) in {seconds:.2f} s"
              f" = {args.count / seconds:,.0f} msg/s, {fsyncs} fsyncs in {gcommit.batches}"
              f" batches, {dir_mb(path):,.0f} MiB on disk")
        print(f"rss:    {rss0:.1f} -> {rss1:.1f} MiB (+{rss1 - rss0:.1f} MiB)")

        store.close()
        gcommit.flush_now()
        t0 = time.perf_counter()
        store = SegmentQueueStore(path, mode=args.mode)
        reopen = time.perf_counter() - t0
        assert len(store) == args.count, len(store)
        print(f"reopen: {reopen:.3f} s after close ({store.segment_count} segments,"
              f" {len(store)} messages, rss {rss_mb():.1f} MiB)")
        # crash-style: abandon without sealing, so the last segment has no index
        store.flush()
        store._cursor.close()
        store._acks.close(flush=False)
        store._dirh.close()
        for name in sorted(p.name for p in path.glob("*.idx"))[-1:]:
            (path / name).unlink()
        t0 = time.perf_counter()
        store = SegmentQueueStore(path, mode=args.mode, group_commit=gcommit)
        crash_reopen = time.perf_counter() - t0
        print(f"reopen: {crash_reopen:.3f} s after a crash (last segment scanned)")

        seconds, done = loop.run_until_complete(drain(store, slice_s))
        assert done == args.count, done
        loop.run_until_complete(gcommit.sync())
        store.flush()
        print(f"drain:  {done} shift+ack in {seconds:.2f} s = {done / seconds:,.0f} msg/s,"
              f" {dir_mb(path):.2f} MiB left on disk, rss {rss_mb():.1f} MiB")
        store.close()
        gcommit.flush_now()
        loop.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
