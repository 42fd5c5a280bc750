"""Memory and CPU of a worker's process tree, read from /proc (no psutil needed).

RSS summed over prefork children counts the pages they share with the parent once per
child, so PSS (from ``smaps_rollup``, shared pages split between sharers) is sampled too:
RSS sum is what ``ps`` users see, PSS sum is closer to what the host really spends.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """*root* and all its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(parents.get(pid, []))
    return tree


def _kib(path: str, field: str) -> int:
    with contextlib.suppress(OSError), open(path) as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def cpu_seconds(roots: list[int]) -> float:
    """User+system CPU of each root, its reaped children and its live descendants."""
    total = 0
    for root in roots:
        for pid in process_tree(root):
            fields = _stat_fields(pid)
            if fields is None:
                continue
            # utime, stime at 11, 12; cutime, cstime (reaped children) at 13, 14.
            total += int(fields[11]) + int(fields[12])
            if pid == root:
                total += int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


@dataclass
class MemoryPeak:
    rss_kib: int = 0
    pss_kib: int = 0
    processes: int = 0


class MemorySampler:
    """Sample the tree's summed VmRSS and PSS in a thread; keep the peaks."""

    def __init__(self, roots: list[int], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = MemoryPeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = [pid for root in self.roots for pid in process_tree(root)]
        rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
        pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        self.peak.rss_kib = max(self.peak.rss_kib, rss)
        self.peak.pss_kib = max(self.peak.pss_kib, pss)
        self.peak.processes = max(self.peak.processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
