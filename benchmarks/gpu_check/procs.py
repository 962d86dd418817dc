"""Child processes with a time box: the compiled cases, DDP under torchrun, the train stage runs.

Each runs in its own session, so past its time box the whole group dies at once (torchrun's
ranks, inductor's compile workers, DataLoader workers), and is reaped with `os.wait4`, which
gives that child's own peak RSS (the largest of it and the descendants it waited for).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.kaggle16 import REPO_DIR


@dataclass(frozen=True)
class Finished:
    code: int | str  # the exit code, or "timeout"
    wall_s: float
    max_rss_mib: float  # the largest resident size of the process (or a reaped descendant)
    log: str  # the tail of its stdout and stderr when they were kept, else ""


def repo_env(**extra: str) -> dict[str, str]:
    """This environment, with the repo importable from any working folder."""
    path = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))
    return os.environ | {"PYTHONPATH": path} | extra


def run_bounded(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, log: Path | None = None
) -> Finished:
    """Run `cmd` to its end or `timeout` seconds, then kill its process group. Its output goes
    to `log` when given (the tail comes back), else to this process's own."""
    start = time.perf_counter()
    timed_out = threading.Event()
    with open(log, "w") if log else contextlib.nullcontext() as out:
        stderr = subprocess.STDOUT if out else None
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, start_new_session=True, stdout=out, stderr=stderr
        )

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            # Wait without reaping: while the child is a zombie its pid (the group's id) cannot
            # be reused, so what is left of its group is killed safely before it is reaped.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        finally:
            timer.cancel()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    code: int | str = "timeout" if timed_out.is_set() else proc.returncode
    tail = log.read_text(errors="replace")[-4000:] if log else ""
    return Finished(code, time.perf_counter() - start, usage.ru_maxrss / 1024, tail)
