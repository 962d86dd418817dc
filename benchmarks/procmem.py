"""Memory of a process tree, from /proc: shared by the benchmarks that run a stage as a subprocess
(`bench_preprocess`, the rehearsal), so both count memory the same way."""

from __future__ import annotations

import os


def tree_pss_kib(pid: int) -> int:
    """Proportional set size (KiB) of `pid` and all its descendants, from /proc.

    PSS, not RSS: worker processes share the pages of numpy, numba and zarr, and summing their
    RSS would count those once per process.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total
