"""Measure each predict option on real drawings: plain, TTA, GRU+BiLSTM ensemble, prior correction.

    python -m benchmarks.predict_options_kaggle16 --budget 300          # trains gru and bilstm
    python -m benchmarks.predict_options_kaggle16 --models a.pt b.pt    # or score given models

Builds a kaggle16 store in a temp folder (`benchmarks.accuracy_kaggle16.build_store`), trains
`gru` and `bilstm` for `--budget` seconds each with the repo's `train:` params (unless `--models`
are given; the first is the "plain" model, the others are its ensemble), then scores every option
on the val split (balanced, `--val-per-class` per class) and on test_simplified.csv against
test_solution.csv (balanced, 100 per class). Prints a Markdown table for the README and writes
benchmarks/results/predict_options_kaggle16.json. Run it on a quiet machine: it times inference.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.accuracy_kaggle16 import KAGGLE16_DIR, build_store, read_test
from pipeline.config import TrainConfig, from_dict, load_params
from pipeline.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.predict import ensemble_proba
from pipeline.prior import correct_priors
from pipeline.store import Drawings, DrawingStore
from tests.conftest import REPO_DIR

RESULTS_PATH = Path(__file__).parent / "results" / "predict_options_kaggle16.json"
BATCH_SIZE = 512


def train_models(store_path: Path, work_dir: Path, budget_s: float) -> list[Path]:
    from pipeline.train import run as train

    paths = []
    for name in ("gru", "bilstm"):
        raw = load_params(REPO_DIR / "configs" / "params.yaml")["train"]
        raw |= {"model": name, "time_budget_s": budget_s, "epochs": 10_000}
        model_path = work_dir / f"{name}.pt"
        train(from_dict(TrainConfig, raw, "train"), store_path, model_path,
              work_dir / f"checkpoints-{name}", None)  # fmt: skip
        paths.append(model_path)
    return paths


def score_options(
    models: list[Path], drawings: Drawings, labels: np.ndarray, classes: list[str], tta: int
) -> dict[str, dict[str, float]]:
    """MAP@3, top-1 and drawings/s of each option on one labelled set."""
    options = {
        "plain": dict(paths=models[:1], tta=0, prior=False),
        f"tta={tta}": dict(paths=models[:1], tta=tta, prior=False),
        "prior": dict(paths=models[:1], tta=0, prior=True),
        "ensemble": dict(paths=models, tta=0, prior=False),
        "ensemble+prior": dict(paths=models, tta=0, prior=True),
        f"ensemble+tta={tta}+prior": dict(paths=models, tta=tta, prior=True),
    }
    if len(models) == 1:
        options = {k: v for k, v in options.items() if "ensemble" not in k}
    results = {}
    for name, opt in options.items():
        start = time.perf_counter()
        proba = ensemble_proba(opt["paths"], drawings, classes, BATCH_SIZE, tta=opt["tta"])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per model")
    parser.add_argument("--models", type=Path, nargs="*", default=[], help="checkpoints to score")
    parser.add_argument("--tta", type=int, default=4)
    parser.add_argument("--val-per-class", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="kaggle16-options-") as tmp:
        work_dir = Path(tmp)
        store_path = work_dir / "processed" / "drawings.zarr"
        build_store(KAGGLE16_DIR, store_path, val_per_class=args.val_per_class, block_size=4096)
        store = DrawingStore(store_path)
        models = args.models or train_models(store_path, work_dir, args.budget)
        val = store.split("val").read()
        test, test_labels = read_test(KAGGLE16_DIR, store.classes)
        results = {
            "val": score_options(models, val, val.labels.astype(np.int64), store.classes, args.tta),
            "test": score_options(models, test, test_labels, store.classes, args.tta),
        }
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    setup = {"models": [m.name for m in models], "budget_s": None if args.models else args.budget}
    RESULTS_PATH.write_text(json.dumps(setup | results, indent=2) + "\n")
    print(f"\n| option | val MAP@3 ({len(val):,}) | test MAP@3 ({len(test):,}) | test top-1 "
          "| drawings/s |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    for name in results["val"]:
        v, t = results["val"][name], results["test"][name]
        print(f"| {name} | {v['map3']:.4f} | {t['map3']:.4f} | {t['top1']:.4f} "
              f"| {t['drawings_per_s']:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
