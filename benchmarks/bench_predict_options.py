"""Each predict option on real drawings: plain, TTA, prior correction, a GRU+BiLSTM mean.

    python -m benchmarks predict_options     # via `make bench`, after bench_accuracy

Scores the checkpoints `bench_accuracy` left in `benchmarks/results/kaggle16-{gru,bilstm}.pt`
(trained with the repo's default params for the same budget; trained here first if missing).
Every option is scored on kaggle16's val split (the same 25 per class the models picked their
best checkpoint on, so slightly optimistic) and on its 1,600 test drawings (100 per class, never
seen) against test_solution.csv, with inference drawings/s. Run on a quiet machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import bench_accuracy
from benchmarks.kaggle16 import build_store
from pipeline.core.drawings import Drawings
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.models.predictor import member_proba
from pipeline.scoring.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.scoring.prior import correct_priors

BATCH_SIZE = 512
TTA = 4


def options(models: list[Path]) -> dict[str, dict]:
    plain, both = models[:1], models
    return {
        "plain (gru)": dict(paths=plain, tta=0, prior=False),
        f"tta={TTA}": dict(paths=plain, tta=TTA, prior=False),
        "prior correction": dict(paths=plain, tta=0, prior=True),
        "mean of gru+bilstm": dict(paths=both, tta=0, prior=False),
        "mean + prior": dict(paths=both, tta=0, prior=True),
        f"mean + tta={TTA} + prior": dict(paths=both, tta=TTA, prior=True),
    }


def mean_proba(paths: list[Path], drawings: Drawings, tta: int) -> np.ndarray:
    """The mean of the models' (N, C) probabilities (`ensemble.method: mean`)."""
    probas = []
    for path in paths:
        probas.append(member_proba(load_model(path), drawings, BATCH_SIZE, tta=tta))
    return np.mean(probas, axis=0)


def score(models: list[Path], drawings: Drawings) -> dict[str, dict]:
    """MAP@3, top-1 and drawings/s of each option on one labelled split."""
    labels = drawings.labels.astype(np.int64)
    results = {}
    for name, opt in options(models).items():
        start = time.perf_counter()
        proba = mean_proba(opt["paths"], drawings, opt["tta"])
        if opt["prior"]:
            proba = correct_priors(proba)
        seconds = time.perf_counter() - start
        top = topk_indices(proba, 3)
        results[name] = {
            "map3": round(map_at_k(top, labels), 4),
            "top1": round(top_k_accuracy(top, labels, 1), 4),
            "drawings_per_s": round(len(drawings) / seconds, 1),
        }
    return results


def run() -> dict[str, float]:
    models = [bench_accuracy.model_path(m) for m in ("gru", "bilstm")]
    if not all(p.is_file() for p in models):
        bench_accuracy.run()
    with tempfile.TemporaryDirectory(prefix="bench-options-") as tmp:
        store = DrawingStore(build_store(Path(tmp) / "processed" / "drawings.zarr"))
        val, test = store.split("val").read(), store.split("test").read()
        results = {
            "val": score(models, val),
            "test": score(models, test),
        }
    print(
        f"\n| option | val MAP@3 ({len(val):,}) | test MAP@3 ({len(test):,}) | test top-1 "
        "| drawings/s |\n| --- | --- | --- | --- | --- |"
    )
    for name in results["val"]:
        v, t = results["val"][name], results["test"][name]
        print(
            f"| {name} | {v['map3']:.4f} | {t['map3']:.4f} | {t['top1']:.4f} "
            f"| {t['drawings_per_s']:,.0f} |"
        )
    return {
        f"{split}/{name}/{key}": value
        for split, rows in results.items()
        for name, row in rows.items()
        for key, value in row.items()
    }


if __name__ == "__main__":
    run()
