"""Accuracy run: train with the default params on real drawings, score MAP@3 on the held-out test.

    python -m benchmarks.accuracy_kaggle16 --budget 600          # the README figure (quiet machine)
    python -m benchmarks.accuracy_kaggle16 --budget 120 -S hidden_size=96 -S model=gru

Builds a store from `../shared/quickdraw/kaggle16` in a temp folder (with `pipeline.preprocess.run`
when it exists, else a small json.loads reader), trains with `configs/params.yaml`'s `train:`
section (plus `--budget` as `time_budget_s`, epochs high, and any `-S key=value` overrides),
predicts `test_simplified.csv` and scores it against `test_solution.csv`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from pipeline.config import PreprocessConfig, TrainConfig, from_dict, load_params
from pipeline.store import Drawings, SplitWriter, create_store
from tests.conftest import REPO_DIR, SHARED_QUICKDRAW

log = logging.getLogger(__name__)
KAGGLE16_DIR = SHARED_QUICKDRAW / "kaggle16"


def build_store(raw_dir: Path, store_path: Path, val_per_class: int, block_size: int) -> None:
    """train/val from train_simplified/*.csv (val = lowest key_id hashes per class), test split."""
    try:
        from pipeline import preprocess
    except ImportError:
        preprocess = None
    if preprocess is not None and hasattr(preprocess, "run"):
        params = load_params(REPO_DIR / "configs" / "params.yaml")["preprocess"]
        cfg = from_dict(PreprocessConfig, params, "preprocess")
        cfg = dataclasses.replace(cfg, val_per_class=val_per_class, block_size=block_size)
        preprocess.run(cfg, raw_dir, store_path.parent)
        return
    files = sorted((raw_dir / "train_simplified").glob("*.csv"))
    classes = sorted(f.stem for f in files)
    rng = np.random.default_rng(0)
    train, val = [], []
    for label, f in enumerate(files):
        rows = list(csv.DictReader(f.open()))
        order = np.argsort([hash((int(r["key_id"]) * 2654435761) % 2**32) for r in rows])
        for i, j in enumerate(order):
            r = rows[j]
            item = (json.loads(r["drawing"]), label, int(r["key_id"]))
            (val if i < val_per_class else train).append(item)
    root = create_store(store_path, classes, {"counts": {}, "params": {}})
    for split, items in (("train", train), ("val", val)):
        items = [items[i] for i in rng.permutation(len(items))]  # class-mixed blocks
        writer = SplitWriter(root, split, block_size)
        writer.append(
            Drawings.from_strokes([d for d, _, _ in items], [y for _, y, _ in items],
                                  [k for _, _, k in items])
        )  # fmt: skip
        writer.close()
    test_rows = list(csv.DictReader((raw_dir / "test_simplified.csv").open()))
    writer = SplitWriter(root, "test", block_size)
    writer.append(
        Drawings.from_strokes(
            [json.loads(r["drawing"]) for r in test_rows],
            key_ids=[int(r["key_id"]) for r in test_rows],
        )
    )
    writer.close()


def read_test(raw_dir: Path, classes: list[str]) -> tuple[Drawings, np.ndarray]:
    """Test drawings and their true labels (from test_solution.csv)."""
    solution = {
        int(r["key_id"]): r["word"].replace("_", " ")
        for r in csv.DictReader((raw_dir / "test_solution.csv").open())
    }
    rows = list(csv.DictReader((raw_dir / "test_simplified.csv").open()))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[solution[int(r["key_id"])]] for r in rows])
    drawings = Drawings.from_strokes([json.loads(r["drawing"]) for r in rows], labels.tolist())
    return drawings, labels


def map_at_3(proba: np.ndarray, labels: np.ndarray) -> float:
    top3 = np.argsort(-proba, axis=1)[:, :3]
    hits = top3 == labels[:, None]
    return float((hits / np.arange(1, 4)).sum(axis=1).mean())


def run(budget_s: float, overrides: dict[str, object], work_dir: Path) -> dict[str, float]:
    from pipeline.inference import load_checkpoint, predict_proba
    from pipeline.train import run as train

    raw = load_params(REPO_DIR / "configs" / "params.yaml")["train"]
    raw |= {"time_budget_s": budget_s, "epochs": 10_000} | overrides
    cfg = from_dict(TrainConfig, raw, "train")
    store_path = work_dir / "processed" / "drawings.zarr"
    build_store(KAGGLE16_DIR, store_path, val_per_class=25, block_size=4096)
    start = time.perf_counter()
    result = train(
        cfg, store_path, work_dir / "model.pt", work_dir / "checkpoints", work_dir / "dvclive"
    )
    train_s = time.perf_counter() - start
    model, meta = load_checkpoint(work_dir / "model.pt")
    drawings, labels = read_test(KAGGLE16_DIR, meta["classes"])
    start = time.perf_counter()
    proba = predict_proba(model, meta, drawings, batch_size=512)
    predict_s = time.perf_counter() - start
    try:
        from pipeline.metrics import map_at_k, topk_indices

        test_map3 = map_at_k(topk_indices(proba, 3), labels, 3)
    except ImportError:
        test_map3 = map_at_3(proba, labels)
    figures = {
        "test/map3": test_map3,
        "test/top1": float((proba.argmax(1) == labels).mean()),
        "val/map3": result.summary["val/map3"],
        "epochs": result.summary["epochs"],
        "train/samples_per_s": result.summary["train/samples_per_s"],
        "train_s": train_s,
        "predict_drawings_per_s": len(drawings) / predict_s,
    }
    print(yaml.safe_dump({"overrides": overrides, "budget_s": budget_s}, sort_keys=False))
    for name, value in figures.items():
        print(f"{name:>24}  {value:,.4f}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=600.0, help="time_budget_s")
    parser.add_argument("-S", dest="overrides", action="append", default=[],
                        help="train param override, e.g. -S hidden_size=96")  # fmt: skip
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="kaggle16-") as tmp:
        run(args.budget, overrides, Path(tmp))


if __name__ == "__main__":
    main()
