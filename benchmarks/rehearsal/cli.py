"""The rehearsal's command line (`python -m benchmarks.rehearsal`): every scale in turn, then the
tables on stdout and every figure in `--out`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

import benchmarks.rehearsal as package
from benchmarks.kaggle16 import REPO_DIR
from benchmarks.rehearsal import measure
from benchmarks.rehearsal.competition import KAGGLE_TEST, NOT_IN_KAGGLE, kaggle_classes, log
from benchmarks.rehearsal.csvgen import estimate_row_bytes
from benchmarks.rehearsal.disk import check_disk, disk_needed
from benchmarks.rehearsal.dvccache import DEFAULT, default_cache_types
from benchmarks.rehearsal.project import STATED_GPU_RATES, project
from benchmarks.rehearsal.project_disk import kaggle16_zip_ratio, project_disk
from benchmarks.rehearsal.scale import run_scale
from benchmarks.rehearsal.tables import (
    disk_projection_table,
    disk_table,
    loader_table,
    projection_table,
    scale_table,
    scaling_table,
)
from pipeline.common.cli import user_errors
from pipeline.common.errors import PipelineError

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
DEFAULT_WORK = Path("/tmp/quickdraw-rehearsal")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rehearsal", description=(package.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--drawings", type=int, default=5_000_000, help="train rows at scale 1.0")
    parser.add_argument("--test-rows", type=int, default=KAGGLE_TEST)
    parser.add_argument("--scales", default="0.2,1.0", help="fractions of --drawings, in order")
    parser.add_argument("--train-s", type=float, default=60.0, help="time_budget_s per member")
    parser.add_argument("--members", help="ensemble.members, comma-separated (default: params)")
    parser.add_argument(
        "--gpu-samples-per-s",
        default="",
        help="member=rate,... measured GPU training rates for the projection "
        f"(default: stated placeholders {STATED_GPU_RATES})",
    )
    parser.add_argument(
        "--blend-method",
        choices=("logreg", "weights", "mean"),
        help="ensemble.method (default: params.yaml's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP/MKL/OpenBLAS threads of every step (default 0: the stages' own; torch then "
        "takes every core in blend, evaluate and predict)",
    )
    parser.add_argument(
        "--loader-s", type=float, default=5.0, help="seconds per input-pipeline measurement"
    )
    parser.add_argument(
        "--cache-type",
        dest="cache_types",
        action="append",
        metavar="TYPE",
        help=f"a DVC cache.type to commit the outputs with and measure (repeat it; {DEFAULT!r}: "
        "DVC's own default); default: DVC's default, then the repo's .dvc/config cache.type "
        "(or reflink,hardlink,copy where it sets none)",
    )
    parser.add_argument("--gen-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--keep", action="store_true", help="keep each scale's data and outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "rehearsal.json")
    args = parser.parse_args(argv)
    with user_errors():
        run(args)


def _gpu_rates(text: str) -> tuple[dict[str, float], set[str]]:
    rates, stated = dict(STATED_GPU_RATES), set(STATED_GPU_RATES)
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            rates[name.strip()] = 0.0
        if not rates[name.strip()] > 0:
            raise PipelineError(f"--gpu-samples-per-s: {item!r} is not member=rate (> 0)")
        stated.discard(name.strip())
    return rates, stated


def _members_and_rates(args: argparse.Namespace) -> tuple[dict[str, float], set[str]]:
    """Set `args.members` from --members or params.yaml; each member's GPU rate, and the members
    whose rate is a stated placeholder. An unknown model or a bad param fails here (the
    pipeline's own check), not after preprocess."""
    from pipeline.models.members import load_members

    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    if args.members:
        args.members = [m.strip() for m in args.members.split(",")]
        params["ensemble"] = {**params["ensemble"], "members": args.members}
    args.members = list(params["ensemble"]["members"])
    given, stated_rates = _gpu_rates(args.gpu_samples_per_s)
    gpu_rates, stated = {}, set()
    for name, member in load_members(params).items():
        key = name if name in given else member.model  # a member's own rate, else its family's
        if key not in given:
            raise PipelineError(
                f"no GPU rate for member {name}; pass --gpu-samples-per-s {name}=RATE"
            )
        gpu_rates[name] = given[key]
        if key in stated_rates:
            stated.add(name)
    return gpu_rates, stated


def run(args: argparse.Namespace) -> dict[str, Any]:
    gpu_rates, stated = _members_and_rates(args)
    args.cache_types = args.cache_types or default_cache_types()
    if args.threads > 0:
        measure.STEP_ENV.update(dict.fromkeys(measure.THREAD_VARIABLES, str(args.threads)))
    fractions = [float(f) for f in args.scales.split(",")]
    scales = [round(args.drawings * f) for f in fractions]
    work = args.work.expanduser().resolve()
    row_bytes = estimate_row_bytes()
    need = disk_needed(scales, args.test_rows, row_bytes, args.keep)
    check_disk(work, need)
    log.info(
        "rehearsal: scales %s drawings, %s test rows, members %s, %s s each; about %.1f GB "
        "of disk in %s",
        ", ".join(f"{n:,}" for n in scales),
        f"{args.test_rows:,}",
        ", ".join(args.members),
        args.train_s,
        need / 1e9,
        work,
    )
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cores": os.cpu_count(),
        "max_rss_source": measure.MAX_RSS_SOURCE,
        "threads": args.threads or "the stages' own",
        "classes": kaggle_classes(),
        "not_in_kaggle": list(NOT_IN_KAGGLE),
        "gpu_samples_per_s": gpu_rates,
        "gpu_rates_stated_not_measured": sorted(stated),
        "zip_deflate_ratio": round(kaggle16_zip_ratio(), 4),
        "scales": [],
        "complete": False,
    }
    results = figures["scales"]
    for n in scales:
        results.append(run_scale(n, args, work))
        _write_json(args.out, figures)  # a later failure keeps the scales done
    workers = os.cpu_count() or 1  # preprocess.workers 0: all cores
    projection = project(results, gpu_rates, stated, args.members, workers)
    disk_projection = project_disk(results[-1], figures["zip_deflate_ratio"])
    out = _report(args, results, gpu_rates, stated, projection, disk_projection)
    total_s = time.perf_counter() - started
    out += ["", f"rehearsal wall time {total_s / 60:,.1f} min on {os.cpu_count()} cores"]
    print("\n".join(out))
    figures |= {
        "projection": projection,
        "disk_projection": disk_projection,
        "wall_s": round(total_s, 1),
        "complete": True,
    }
    _write_json(args.out, figures)
    log.info("figures -> %s", args.out)
    return figures


def _report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    gpu_rates: dict[str, float],
    stated: set[str],
    projection: list[dict[str, Any]],
    disk_projection: list[dict[str, Any]],
) -> list[str]:
    """Every table, in order: per scale, the scaling, the projections, bytes on disk."""
    out = [
        "",
        f"Peak memory: tree PSS = the sum over the step's processes, sampled every 0.25 s; "
        f"largest-process RSS = {measure.MAX_RSS_SOURCE}. Threads: "
        + (f"{args.threads} per step" if args.threads else "the stages' own")
        + ".",
    ]
    for result in results:
        out += ["", *scale_table(result), "", *loader_table(result)]
    if len(results) > 1:
        out += [
            "",
            "Scaling (training has a fixed time budget, and blend, evaluate and predict "
            "fixed-size splits: flat by design; preprocess's memory is bounded by design, "
            "and every reader of the train split holds 19 B per drawing):",
            "",
            *scaling_table(results),
        ]
    out += [
        "",
        "Projection: the full competition on 16 cores and one GPU (GPU rates: "
        + ", ".join(
            f"{m} {gpu_rates[m]:,.0f}/s" + (" stated, not measured" if m in stated else " measured")
            for m in args.members
        )
        + ")",
        "",
        *projection_table(projection),
    ]
    for result in results:
        out += ["", *disk_table(result)]
    out += [
        "",
        "Bytes on disk projected for the full competition (from the largest scale):",
        "",
        *disk_projection_table(disk_projection),
    ]
    return out


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
