"""Running a step and measuring it: each step a subprocess (a stage as `python -m pipeline.<stage>`,
or a function of the rehearsal in a fresh interpreter), with its wall time and peak memory two
ways: the sum of PSS over its process tree (sampled from /proc) and the largest single process's
peak RSS (exact)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.kaggle16 import REPO_DIR
from benchmarks.procmem import tree_pss_kib
from benchmarks.rehearsal.competition import log
from pipeline.common.errors import PipelineError

# A function of the rehearsal in a fresh interpreter: argv[1] "module:function", argv[2] its
# arguments as JSON; it prints the result as one JSON line.
CHILD = """
import importlib, json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                    datefmt="%H:%M:%S")
module, _, function = sys.argv[1].partition(":")
print(json.dumps(getattr(importlib.import_module(module), function)(*json.loads(sys.argv[2]))))
"""


@dataclasses.dataclass
class Measured:
    wall_s: float
    peak_pss_mb: float  # the whole process tree, sampled
    max_rss_mb: float  # the largest single process: the step and its reaped children, max
    returncode: int


# Each step runs under GNU time, which reports its child's peak RSS (the max over the child and
# its reaped descendants). Without it, wait4's figure is floored at this process's own RSS: a
# child exec'd from a vfork'd copy of us starts its high-water mark there.
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
MAX_RSS_SOURCE = (
    "GNU time %M of the step's process (max over it and its reaped children)"
    if TIME_BIN
    else "wait4 ru_maxrss (floored at the rehearsal process's own RSS)"
)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STEP_ENV: dict[str, str] = {}  # --threads: set for every step's process


def measure(cmd: list[str], cwd: Path, log_path: Path, sample_s: float = 0.25) -> Measured:
    """Run `cmd` (stdout to `<log>.out`, stderr to `log_path`); time and peak memory."""
    env = {
        **os.environ,
        **STEP_ENV,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_DIR), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".maxrss")
    if TIME_BIN:
        cmd = [TIME_BIN, "-f", "%M", "-o", str(rss_path), *cmd]
    with open(log_path.with_suffix(".out"), "w") as out, open(log_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env)
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_pss_kib(proc.pid))
                done.wait(sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    max_rss_kib = usage.ru_maxrss
    if TIME_BIN:
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_rss_kib = int(rss_path.read_text().split()[-1])
    return Measured(wall, peak[0] / 1024, max_rss_kib / 1024, proc.returncode)


def run_step(name: str, cmd: list[str], cwd: Path, logs: Path) -> tuple[Measured, str]:
    """`measure` a step; a failure is a PipelineError quoting the end of its log."""
    log.info("%s: %s", name, " ".join(cmd[2:] if cmd[1] == "-m" else [function_of(cmd)]))
    m = measure(cmd, cwd, logs / f"{name}.log")
    if m.returncode != 0:
        tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
        for line in tail:
            log.error("  %s", line)
        raise PipelineError(f"step {name} failed (exit {m.returncode}); log: {logs}/{name}.log")
    log.info(
        "%s: %.1f s, peak %s MB (tree PSS), %s MB (largest process RSS)",
        name,
        m.wall_s,
        f"{m.peak_pss_mb:,.0f}",
        f"{m.max_rss_mb:,.0f}",
    )
    return m, (logs / f"{name}.out").read_text()


def function_of(cmd: list[str]) -> str:
    """What a `CHILD` command runs, for the log."""
    return cmd[3].replace(":", ".") if cmd[1] == "-c" else " ".join(cmd)


def call(name: str, function: str, args: list, cwd: Path, logs: Path) -> tuple[Measured, dict]:
    """`run_step` of `function` ("module:function") in a fresh interpreter; its JSON result."""
    m, out = run_step(name, [sys.executable, "-c", CHILD, function, json.dumps(args)], cwd, logs)
    return m, json.loads(out.strip().splitlines()[-1])


def stage(name: str, module: str, cwd: Path, logs: Path, *extra: str) -> Measured:
    return run_step(name, [sys.executable, "-m", module, *extra], cwd, logs)[0]
