"""GPU utilisation and memory as the driver sees them, sampled by `nvidia-smi` in the background
while a train stage runs in its own process (where torch's own counters cannot be read).

    with GpuMonitor() as mon:
        ...                     # the run
    mon.stats()                 # {"gpu_util_mean": ..., "gpu_mem_max_mib": ..., ...}

Utilisation is the share of time a kernel was running, so 100% can still be a small kernel at a
time; it tells a GPU waiting on the host (low) from one kept busy (high). Memory is the whole
device's (the CUDA context and torch's cache included). No `nvidia-smi`: `stats()` is empty.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from typing import Any

import numpy as np

QUERY = "utilization.gpu,memory.used"
INTERVAL_MS = 250


class GpuMonitor:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (util %, memory MiB), every GPU's rows
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuMonitor:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return self
        cmd = [exe, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", f"-lms={INTERVAL_MS}"]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):  # "[N/A]" fields, a cut-off last line
                util, mem = (float(v) for v in line.split(","))
                self.samples.append((util, mem))

    def __exit__(self, *_: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
            if self._reader is not None:
                self._reader.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        """Utilisation over the whole run and over its active span (first to last sample with a
        kernel running: start-up and exit left out), the active span's slowest tenth, and the
        largest memory in use."""
        if not self.samples:
            return {}
        util, mem = np.array(self.samples).T
        busy = np.flatnonzero(util > 0)
        active = util[busy[0] : busy[-1] + 1] if len(busy) else util
        return {
            "gpu_util_mean": float(util.mean()),
            "gpu_util_active_mean": float(active.mean()),
            "gpu_util_active_p10": float(np.percentile(active, 10)),  # host stalls show here
            "gpu_mem_max_mib": float(mem.max()),
            "gpu_samples": len(util),
        }
