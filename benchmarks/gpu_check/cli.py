"""`python -m benchmarks.gpu_check`: the command line (the package docstring is its help)."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from benchmarks.gpu_check.settings import DEFAULT_OUT
from benchmarks.gpu_check.store import SOURCES

# Flags that replace a field of `Settings` when given.
SETTINGS_FLAGS = ("batches", "image_size", "compile", "budget_s", "loop_s", "stage_s", "drawings")


def parser() -> argparse.ArgumentParser:
    import benchmarks.gpu_check as package

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=(package.__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--device", default="auto", help="auto (a GPU if any) | cuda | cpu")
    p.add_argument("--quick", action="store_true", help="small sizes: a CPU in < 2 min")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    p.add_argument(
        "--preset",
        default="auto",
        help="configs/<NAME>.yaml; auto: full-gpu on a GPU, params.yaml on the CPU; "
        "none: params.yaml",
    )
    p.add_argument("--members", help="comma-separated members to measure (default: the ensemble's)")
    p.add_argument(
        "--source", choices=SOURCES, default="auto", help="where the store's drawings come from"
    )
    p.add_argument(
        "--drawings", type=int, help="--source rehearsal: train rows (GPU default 1,000,000)"
    )
    p.add_argument(
        "--work", type=Path, help="keep the store and runs here (a store there is reused)"
    )
    p.add_argument(
        "--batches",
        type=lambda text: tuple(int(b) for b in text.split(",")),
        help="train-step batch sizes, comma-separated (GPU default 512,1024)",
    )
    p.add_argument("--image-size", type=int, help="replace the image members' side in pixels")
    p.add_argument("--compile", choices=("none", "one", "all"), help="compiled train-step cases")
    p.add_argument("--budget-s", type=float, help="run time target (drops compile cases)")
    p.add_argument("--loop-s", type=float, help="each in-process training loop's budget (0: skip)")
    p.add_argument("--stage-s", type=float, help="train each member's stage this long (0: skip)")
    p.add_argument("--ddp-cpu", action="store_true", help="on the CPU: DDP with 2 gloo ranks")
    p.add_argument("--stage-worker", help=argparse.SUPPRESS)  # a stage run's process (each rank)
    p.add_argument("--compile-worker", type=Path, help=argparse.SUPPRESS)  # the compiled cases
    return p


def _stop(signum: int, _: object) -> None:
    # A SIGTERM (`timeout`'s) as an exception, so each child's process group, which runs in a
    # session of its own out of the signal's reach, is killed on the way out (`run_bounded`).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    if args.stage_worker:
        from benchmarks.gpu_check.stage import stage_worker

        stage_worker(args.stage_worker)
        return
    if args.compile_worker:
        from benchmarks.gpu_check.compiled import compile_worker

        compile_worker(args.compile_worker)
        return
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer (the loop) picks a GPU if it sees one
    from benchmarks.gpu_check.check import run

    overrides = {k: getattr(args, k) for k in SETTINGS_FLAGS if getattr(args, k) is not None}
    run(
        args.device,
        args.quick,
        args.members.split(",") if args.members else None,
        args.out,
        args.source,
        args.ddp_cpu,
        args.preset,
        args.work,
        **overrides,
    )
