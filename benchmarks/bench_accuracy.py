"""Accuracy per CPU budget on real drawings: both models, default params, scored on held-out test.

    python -m benchmarks accuracy                                    # via `make bench`
    python -m benchmarks.bench_accuracy --budget 120 -S hidden_size=128 --models gru

Builds a store from `../shared/quickdraw/kaggle16` with the preprocess stage (25 val drawings per
class for model selection, 9,600 to train on), trains each model with `params.yaml`'s
`train:` section and `time_budget_s` = the budget (600 s; `BENCH_BUDGET_S` overrides), then
scores the best checkpoint on the 1,600 drawings of `test_simplified.csv` against
`test_solution.csv` (never seen in training or model selection), plain and with each inference
option (the mirror TTA, prior correction, both) on the same weights. Checkpoints are kept in
`benchmarks/results/kaggle16-<model>.pt` for `bench_predict_options`. Run on a quiet machine: the
budget is wall time.

The references, re-implemented and trained 600 s on this machine (issue 4): the TensorFlow
tutorial's conv1d + 3 x BiLSTM(128) reached MAP@3 0.81, the GRU baseline 0.82.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.kaggle16 import RESULTS_DIR, build_store, member_config, paths_reading
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.models.predictor import member_proba
from pipeline.scoring.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.scoring.prior import correct_priors
from pipeline.train import run as train

BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "600"))
MODELS = ("gru", "bilstm")  # `--models cnn` trains the image member too
FAMILIES = ("gru", "bilstm", "cnn")
REFERENCES = {"TF tutorial conv1d+3xBiLSTM(128)": 0.81, "GRU baseline 2xGRU(128)": 0.82}


def model_path(name: str) -> Path:
    return RESULTS_DIR / f"kaggle16-{name}.pt"


def train_and_score(
    name: str, budget_s: float, overrides: dict[str, Any], store_path: Path, work_dir: Path
) -> dict[str, float]:
    """Train `name` for `budget_s`, keep its best checkpoint, score it on the test split."""
    cfg = member_config(name, budget_s, **overrides)
    out = work_dir / name
    paths = paths_reading(store_path, out)
    result = train(cfg, paths, log_live=False)
    RESULTS_DIR.mkdir(exist_ok=True)
    shutil.copyfile(paths.model_path, model_path(name))

    loaded = load_model(model_path(name))
    model = loaded.model
    test = DrawingStore(store_path).split("test").read()
    start = time.perf_counter()
    proba = member_proba(loaded, test, batch_size=512)  # (1600, 16)
    infer_s = time.perf_counter() - start
    top, labels = topk_indices(proba, 3), test.labels.astype(np.int64)
    n_params = sum(p.numel() for p in model.parameters())
    # The inference options on the same weights: the mirror TTA, prior correction, both.
    flip = member_proba(loaded, test, batch_size=512, flip=True)
    options = {"flip": flip, "prior": correct_priors(proba), "flip+prior": correct_priors(flip)}
    return {
        "test/map3": round(map_at_k(top, labels), 4),
        "test/top1": round(top_k_accuracy(top, labels, 1), 4),
        **{
            f"test/{name}/map3": round(map_at_k(topk_indices(p, 3), labels), 4)
            for name, p in options.items()
        },
        "val/map3": round(result.summary["val/map3"], 4),
        "epochs": round(result.summary["epochs"], 1),
        "train/samples_per_s": round(result.summary["train/samples_per_s"], 1),
        "train_s": round(result.summary["time_s"], 1),
        "parameters": n_params,
        "inference_drawings_per_s": round(len(test) / infer_s, 1),
    }


def run(
    budget_s: float = BUDGET_S, models: tuple[str, ...] = MODELS, overrides: dict | None = None
) -> dict[str, float]:
    overrides = overrides or {}
    figures: dict[str, float] = {"budget_s": budget_s}
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        store_path = build_store(Path(tmp) / "processed" / "drawings.zarr")
        for name in models:
            scores = train_and_score(name, budget_s, overrides, store_path, Path(tmp))
            figures |= {f"{name}/{k}": v for k, v in scores.items()}
    if overrides:
        print(yaml.safe_dump({"overrides": overrides}, sort_keys=False), end="")
    print(f"\nkaggle16, {budget_s:.0f} s of training each, default params, test = 1,600 held-out")
    print(
        "| model | test MAP@3 | + flip TTA | + prior | + both | test top-1 | val MAP@3 | epochs "
        "| samples/s | params |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in models:
        f = {k.split("/", 1)[1]: v for k, v in figures.items() if k.startswith(f"{name}/")}
        print(
            f"| {name} | {f['test/map3']:.4f} | {f['test/flip/map3']:.4f} "
            f"| {f['test/prior/map3']:.4f} | {f['test/flip+prior/map3']:.4f} "
            f"| {f['test/top1']:.4f} | {f['val/map3']:.4f} "
            f"| {f['epochs']:.0f} | {f['train/samples_per_s']:,.0f} | {f['parameters']:,} |"
        )
    for ref, map3 in REFERENCES.items():
        print(f"| {ref} (reference) | {map3:.2f} | | | | | |")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="time_budget_s per model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=FAMILIES)
    parser.add_argument(
        "-S",
        dest="overrides",
        action="append",
        default=[],
        help="member param override (a family or train key), e.g. -S hidden_size=128",
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run(args.budget, tuple(args.models), overrides)


if __name__ == "__main__":
    main()
