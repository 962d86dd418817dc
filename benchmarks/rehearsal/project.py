"""The competition projected from the largest scale's measurements: preprocess time, the store,
epochs per member on a 16-core, one-GPU machine, memory per reader of the train split, and the
fixed-size stages (blend, evaluate, predict) as measured here."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from benchmarks.rehearsal.competition import (
    BLEND_PER_CLASS,
    KAGGLE_CLASSES,
    KAGGLE_TEST,
    KAGGLE_TRAIN,
    VAL_PER_CLASS,
)
from benchmarks.rehearsal.loader import GPU_BATCH

# Placeholders until measured on a GPU: stated, not measured (--gpu-samples-per-s replaces them).
STATED_GPU_RATES = {"gru": 20_000.0, "bilstm": 20_000.0, "cnn": 8_000.0}
PROJECTED_CORES = 16
PROJECTED_LOADER_WORKERS = 15  # DataLoader workers beside the training process on 16 cores
READER_BYTES_PER_DRAWING = 8 + 2 + 8 + 1  # every SplitReader loads offsets, label, key_id, valid
TRAIN_FULL = KAGGLE_TRAIN - KAGGLE_CLASSES * (VAL_PER_CLASS + BLEND_PER_CLASS)

Row = Callable[[str, str, str, str], None]


def project(
    results: list[dict[str, Any]],
    gpu_rates: dict[str, float],
    stated: set[str],
    members: list[str],
    workers: int,
) -> list[dict[str, Any]]:
    """The competition on a 16-core, one-GPU machine, from the largest scale's figures (and the
    growth of memory between the smallest and the largest)."""
    rows: list[dict[str, Any]] = []

    def row(item: str, value: str, basis: str, kind: str) -> None:
        rows.append({"item": item, "value": value, "basis": basis, "figures": kind})

    _preprocess(results[-1], workers, row)
    for member in members:
        _member(results[-1]["steps"]["input pipeline"]["rates"], member, gpu_rates, stated, row)
    _reader_memory(results, members, row)
    _fixed_stages(results[-1]["steps"], row)
    return rows


def _preprocess(result: dict[str, Any], workers: int, row: Row) -> None:
    """The CSV, preprocess's two passes and the store."""
    gen, pre = result["steps"]["generate"], result["steps"]["preprocess"]["metrics"]
    drawings = result["drawings"]
    full_csv = KAGGLE_TRAIN * gen["bytes_per_row"]
    row(
        "train CSV",
        f"{full_csv / 1e9:,.1f} GB",
        f"{gen['bytes_per_row']:.0f} bytes per "
        f"generated row x {KAGGLE_TRAIN:,} (Kaggle's own: about 23 GB)",
        "projected",
    )
    per_worker = gen["train_bytes"] / 1e6 / pre["pass1_s"] / workers
    pass1_min = full_csv / 1e6 / (per_worker * PROJECTED_CORES) / 60
    row(
        "preprocess pass 1 (parse, 16 workers)",
        f"{pass1_min:,.1f} min",
        f"{per_worker:,.1f} MB/s of CSV per worker measured at {drawings:,} drawings "
        f"({workers} workers, pass1_s {pre['pass1_s']:.1f}) x {PROJECTED_CORES}",
        "projected",
    )
    stored = pre["train/drawings"] + pre["val/drawings"] + pre["blend/drawings"]
    rest_s = pre["time_s"] - pre["pass1_s"]
    rest_rate = stored / max(rest_s, 1e-9)
    full_stored = KAGGLE_TRAIN - pre["rejected_rows"] * KAGGLE_TRAIN / drawings
    rest_min = full_stored / rest_rate / 60
    row(
        "preprocess pass 2 (merge, write, digests: serial)",
        f"{rest_min:,.1f} min",
        f"{rest_rate:,.0f} drawings/s measured (time_s - pass1_s = {rest_s:.1f} s)",
        "projected",
    )
    row("preprocess total", f"{pass1_min + rest_min:,.1f} min", "the two passes", "projected")
    row(
        "store",
        f"{pre['bytes_per_drawing'] * (KAGGLE_TRAIN + KAGGLE_TEST) / 1e9:,.1f} GB",
        f"{pre['bytes_per_drawing']:.0f} B/drawing measured",
        "projected",
    )


def _member(
    rates: dict[str, Any], member: str, gpu_rates: dict[str, float], stated: set[str], row: Row
) -> None:
    """A member's epoch on the GPU, its input pipeline on 15 workers, and which one binds."""
    gpu = gpu_rates[member]
    kind = "stated, not measured" if member in stated else "measured (given)"
    gpu_h = TRAIN_FULL / gpu / 3600
    row(
        f"{member}: epoch on the GPU",
        f"{gpu_h:,.2f} h",
        f"{TRAIN_FULL:,} drawings / {gpu:,.0f} samples/s",
        f"projected from a rate {kind}",
    )
    one = rates.get(f"{member}/batch{GPU_BATCH}/workers0")
    two = rates.get(f"{member}/batch{GPU_BATCH}/workers2")
    if not (one and two):
        return
    high = one["drawings_per_s"] * PROJECTED_LOADER_WORKERS
    low = min(two["drawings_per_s"] / 2 * PROJECTED_LOADER_WORKERS, high)
    size = f", {one['image_size']} px" if one["encoder"] == "image" else ""
    row(
        f"{member}: input pipeline, {PROJECTED_LOADER_WORKERS} workers",
        f"{low:,.0f} to {high:,.0f} drawings/s",
        f"{PROJECTED_LOADER_WORKERS} x half the 2-worker rate ({two['drawings_per_s']:,.0f}"
        f"/s: worker-to-trainer transfer and this box's contention included) to "
        f"{PROJECTED_LOADER_WORKERS} x the in-process rate "
        f"({one['drawings_per_s']:,.0f}/s); {one['encoder']}, batch {GPU_BATCH}{size}",
        "projected from measured",
    )
    bound = "GPU" if gpu <= low else "input pipeline (at the low figure)"
    row(
        f"{member}: epoch",
        f"{TRAIN_FULL / min(gpu, low) / 3600:,.2f} h",
        f"the slower of the GPU and the low input figure: {bound}-bound",
        "projected",
    )


def _reader_memory(results: list[dict[str, Any]], members: list[str], row: Row) -> None:
    """What every reader of the train split holds, and the measured growth of the trainers."""
    reader_gb = READER_BYTES_PER_DRAWING * TRAIN_FULL / 1e9
    if len(results) > 1:
        small, big = results[0]["steps"], results[-1]["steps"]
        grew = [
            (big[f"train@{m}"]["max_rss_mb"] - small[f"train@{m}"]["max_rss_mb"])
            * 1e6
            / (
                big[f"train@{m}"]["metrics"]["train/drawings"]
                - small[f"train@{m}"]["metrics"]["train/drawings"]
            )
            for m in members
        ]
        measured = "; measured growth of the train stage's peak RSS: " + ", ".join(
            f"{m} {g:,.0f} B/drawing" for m, g in zip(members, grew, strict=True)
        )
    else:
        measured = ""
    row(
        "memory per process reading the train split (trainer, each DataLoader worker)",
        f"{reader_gb:,.2f} GB; {reader_gb * (PROJECTED_LOADER_WORKERS + 1):,.0f} GB with "
        f"{PROJECTED_LOADER_WORKERS} workers",
        f"{READER_BYTES_PER_DRAWING} B/drawing of per-drawing arrays every SplitReader loads "
        f"(offsets, label, key_id, valid) x {TRAIN_FULL:,}{measured}",
        "projected",
    )


def _fixed_stages(steps: dict[str, Any], row: Row) -> None:
    """Blend, evaluate and predict: measured here, at the competition's sizes where they are."""
    sizes = {
        "blend": ("blend/drawings", KAGGLE_CLASSES * BLEND_PER_CLASS),
        "evaluate": ("val/drawings", KAGGLE_CLASSES * VAL_PER_CLASS),
        "predict": ("test/rows", KAGGLE_TEST),
    }
    for name, (key, competition) in sizes.items():
        n = steps[name]["metrics"][key]
        same = n == competition
        row(
            f"{name}, {n:,} drawings",
            f"{steps[name]['wall_s']:,.0f} s",
            f"this machine's CPU ({os.cpu_count()} cores); "
            + ("the competition's size" if same else f"the competition's: {competition:,}"),
            "measured" if same else "measured, at another size",
        )
