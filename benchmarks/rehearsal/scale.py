"""One scale of the rehearsal: its data generated, every stage run on it as the pipeline runs it
(`python -m pipeline.<stage>` in a run folder with its own params.yaml), each step measured, then
its bytes on disk per part and per DVC cache type."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.rehearsal.competition import log
from benchmarks.rehearsal.disk import PeakBytes, usage
from benchmarks.rehearsal.dvccache import measure_cache
from benchmarks.rehearsal.measure import Measured, call, run_step, stage
from benchmarks.rehearsal.params import write_params


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _record(m: Measured, **figures: Any) -> dict[str, Any]:
    return {
        "wall_s": round(m.wall_s, 2),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "max_rss_mb": round(m.max_rss_mb, 1),
        **figures,
    }


def run_scale(drawings: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate `drawings` rows and run every stage on them; each step's figures, and the bytes
    on disk (`wall_s` is the steps'; the disk measurement's own time is `disk.wall_s`)."""
    scale_dir, logs = work / f"s{drawings}", work / "logs" / f"s{drawings}"
    shutil.rmtree(scale_dir, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    scale_dir.mkdir(parents=True)
    log.info("=== %s drawings in %s (logs: %s) ===", f"{drawings:,}", scale_dir, logs)
    started = time.perf_counter()
    try:
        steps, peak = _run_steps(drawings, args, scale_dir, logs)
        wall_s = time.perf_counter() - started
        disk = _measure_disk(scale_dir, logs, args, peak)
    except BaseException:
        log.warning("left %s as it was, for a look; remove it when done", scale_dir)
        raise
    if not args.keep:
        shutil.rmtree(scale_dir)
    return {
        "drawings": drawings,
        "test_rows": args.test_rows,
        "wall_s": round(wall_s, 1),
        "steps": steps,
        "disk": disk,
    }


def _run_steps(
    drawings: int, args: argparse.Namespace, scale_dir: Path, logs: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Every step's figures, and the peak bytes on disk of `data/` (less `data/raw`) while
    preprocess ran."""
    data_dir, run_dir = scale_dir / "kaggle", scale_dir / "run"
    steps: dict[str, dict[str, Any]] = {}
    m, gen = call(
        "generate",
        "benchmarks.rehearsal.csvgen:generate",
        [str(data_dir), drawings, args.test_rows, args.seed, args.gen_processes],
        scale_dir,
        logs,
    )
    steps["generate"] = _record(m, own_s=gen["write_s"] + gen["pool_s"], **gen)
    params = write_params(run_dir, data_dir, args.members, args.train_s, args.blend_method)
    metrics_dir, live_dir = run_dir / "metrics", run_dir / "dvclive"

    m = stage("download", "pipeline.download", run_dir, logs)
    down = _read_json(metrics_dir / "download.json")
    steps["download"] = _record(m, own_s=down["time_s"], metrics=down)
    with PeakBytes(run_dir / "data", skip=("raw",)) as peak:
        m = stage("preprocess", "pipeline.preprocess", run_dir, logs)
    pre = _read_json(metrics_dir / "preprocess.json")
    steps["preprocess"] = _record(m, own_s=pre["time_s"], metrics=pre)

    names = list(dict.fromkeys(["gru", "cnn", *args.members]))
    store = run_dir / "data" / "processed" / "drawings.zarr"
    loader_args = [str(store), str(params), names, [0, 2], args.loader_s]
    m, rates = call(
        "input pipeline", "benchmarks.rehearsal.loader:loader_rates", loader_args, run_dir, logs
    )
    steps["input pipeline"] = _record(m, rates=rates)

    for member in args.members:
        m = stage(f"train@{member}", "pipeline.train", run_dir, logs, "--member", member)
        live = _read_json(live_dir / member / "metrics.json")
        steps[f"train@{member}"] = _record(m, own_s=round(live["time_s"], 2), metrics=live)
    for name in ("blend", "evaluate", "predict"):
        m = stage(name, f"pipeline.{name}", run_dir, logs)
        figures = _read_json(metrics_dir / f"{name}.json")
        steps[name] = _record(m, own_s=figures["time_s"], metrics=figures)
    m, out = run_step(
        "submit --dry-run", [sys.executable, "-m", "pipeline.submit", "--dry-run"], run_dir, logs
    )
    steps["submit --dry-run"] = _record(m, check=out.strip().splitlines()[-1])
    return steps, peak.figures()


def _measure_disk(
    scale_dir: Path, logs: Path, args: argparse.Namespace, peak: dict[str, float]
) -> dict[str, Any]:
    """Bytes on disk after the stages, then after `dvc add` with each of `args.cache_types`.

    The generated folder goes first: its files are hard links of `data/raw`'s (the `local`
    source links), where a real run's `data/raw` holds the only link of each CSV it extracted
    from the zip, and DVC treats a file with two links differently (it relinks it).
    """
    started = time.perf_counter()
    run_dir = scale_dir / "run"
    stages = usage(run_dir)
    shutil.rmtree(scale_dir / "kaggle")
    cache = measure_cache(run_dir, logs, args.cache_types, args.members)
    return {
        "stages": stages,
        "preprocess_peak": peak,
        **cache,
        "wall_s": round(time.perf_counter() - started, 1),
    }
