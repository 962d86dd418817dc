"""Predict stage: answer every row of `test_simplified.csv`, in file order, with three labels.

Inputs:  data/processed/drawings.zarr (test split), models/model.pt (+ `predict.ensemble`
         checkpoints), params `predict`.
Outputs: submissions/submission.csv  key_id,word in test-file order (Kaggle format)
         metrics/predict.json        test/rows, fallback_rows, time_s, drawings_per_s, and
                                     test/map3, test/top1 when the store has test labels
Run:     python -m pipeline.predict [--params configs/params.yaml]   (or `dvc repro predict`)

Options (each a param, measured in the README):
  ensemble          average the probabilities of models/model.pt and these checkpoints
  tta               average in this many augmented passes per model
  prior_correction  reweight classes so the (balanced) test set is predicted balanced
A row that could not be parsed (stored empty, valid=False) gets the three most frequent
training classes and is counted in `fallback_rows`.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import PARAMS_PATH, PredictConfig, load_section
from pipeline.errors import PipelineError
from pipeline.inference import load_checkpoint, predict_proba
from pipeline.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.paths import METRICS_DIR, MODEL_PATH, STORE_PATH, SUBMISSION_CSV
from pipeline.prior import correct_priors
from pipeline.store import Drawings, DrawingStore
from pipeline.submission import write_submission
from pipeline.utils import entrypoint, require_file, set_seed, write_json

log = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # batches per predict_proba call, so the progress bar moves


def run(
    cfg: PredictConfig,
    store_path: Path = STORE_PATH,
    model_path: Path = MODEL_PATH,
    submission_path: Path = SUBMISSION_CSV,
    metrics_path: Path = METRICS_DIR / "predict.json",
) -> dict[str, float]:
    """Write the submission and the predict metrics; return the metrics."""
    started = time.perf_counter()
    set_seed(cfg.seed)
    store = DrawingStore(store_path)
    classes = store.classes
    if len(classes) < 3:
        raise PipelineError(
            f"a submission needs 3 labels per row but the store has "
            f"{len(classes)} classes; download more classes"
        )
    reader = store.split("test")
    drawings = reader.read()
    usable = reader.valid & (drawings.lengths > 0)
    n_fallback = int((~usable).sum())
    if n_fallback:
        log.warning(
            "%s test rows could not be parsed; they get the most frequent classes",
            f"{n_fallback:,}",
        )

    model_paths = [model_path, *(Path(p) for p in cfg.ensemble)]
    infer_start = time.perf_counter()
    proba = ensemble_proba(
        model_paths,
        drawings.take(np.flatnonzero(usable)),
        classes,
        batch_size=cfg.batch_size,
        tta=cfg.tta,
        seed=cfg.seed,
    )  # (N_usable, C)
    if cfg.prior_correction:
        proba = correct_priors(proba)
    infer_s = time.perf_counter() - infer_start

    top = np.empty((len(drawings), 3), dtype=np.int64)  # (N, 3) in test-file order
    top[:] = fallback_classes(store)
    top[usable] = topk_indices(proba, 3)
    n_rows = write_submission(
        submission_path, reader.key_ids.tolist(), [[classes[c] for c in row] for row in top]
    )

    metrics: dict[str, float] = {
        "test/rows": n_rows,
        "fallback_rows": n_fallback,
        "models": len(model_paths),
        "time_s": round(time.perf_counter() - started, 3),
        "drawings_per_s": round(int(usable.sum()) / max(infer_s, 1e-9), 1),
    }
    labelled = reader.labels >= 0
    if labelled.any():  # offline sources know the answers: score the submission itself
        labels = reader.labels[labelled].astype(np.int64)
        metrics["test/map3"] = map_at_k(top[labelled], labels)
        metrics["test/top1"] = top_k_accuracy(top[labelled], labels, 1)
        metrics["test/labelled"] = int(labelled.sum())
    write_json(metrics_path, metrics)
    log.info("wrote %s rows to %s (%s fallback)", f"{n_rows:,}", submission_path, f"{n_fallback:,}")
    return metrics


def ensemble_proba(
    model_paths: Sequence[Path],
    drawings: Drawings,
    classes: list[str],
    batch_size: int,
    tta: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Mean of the (N, C) softmax probabilities of several checkpoints (same class list).

    The first path is the stage's own model; the others come from `predict.ensemble`.
    """
    total = np.zeros((len(drawings), len(classes)), dtype=np.float32)
    for i, path in enumerate(model_paths):
        hint = "run `dvc repro train` first" if i == 0 else "fix or remove it in predict.ensemble"
        model, meta = load_checkpoint(require_file(Path(path), hint))
        if list(meta["classes"]) != list(classes):
            raise PipelineError(
                f"{path} was trained on a different class list than the store; retrain it on "
                "the current data or drop it from predict.ensemble"
            )
        total += model_proba(model, meta, drawings, batch_size, tta, seed, desc=Path(path).name)
    return total / len(model_paths)


def model_proba(
    model: object,
    meta: dict,
    drawings: Drawings,
    batch_size: int,
    tta: int = 0,
    seed: int = 0,
    desc: str = "predict",
) -> np.ndarray:
    """`predict_proba` in chunks under a progress bar; (N, C) float32 in input order."""
    chunk = batch_size * CHUNK_BATCHES
    parts = []
    with tqdm(total=len(drawings), desc=desc, unit="drawing", unit_scale=True) as bar:
        for i, lo in enumerate(range(0, len(drawings), chunk)):
            part = drawings.take(np.arange(lo, min(lo + chunk, len(drawings))))
            # A per-chunk seed keeps TTA reproducible without repeating one augmentation.
            parts.append(predict_proba(model, meta, part, batch_size, tta=tta, seed=seed + i))
            bar.update(len(part))
    if not parts:
        return np.zeros((0, len(meta["classes"])), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def fallback_classes(store: DrawingStore) -> np.ndarray:
    """The three most frequent training classes (ties by class order), for unreadable rows."""
    return topk_indices(train_class_counts(store)[None, :].astype(np.float64), 3)[0]


def train_class_counts(store: DrawingStore) -> np.ndarray:
    """(C,) training drawings per class, from the store attrs or else counted from labels."""
    counts = store.attrs.get("counts")
    if isinstance(counts, dict) and isinstance(counts.get("train"), dict | list):
        counts = counts["train"]
    if isinstance(counts, dict) and all(c in counts for c in store.classes):
        return np.array([counts[c] for c in store.classes], dtype=np.int64)
    if isinstance(counts, list) and len(counts) == store.n_classes:
        return np.asarray(counts, dtype=np.int64)
    labels = store.split("train").labels.astype(np.int64)
    return np.bincount(labels[labels >= 0], minlength=store.n_classes)


@entrypoint
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_PATH)
    args = parser.parse_args(argv)
    run(load_section("predict", PredictConfig, args.params))


if __name__ == "__main__":
    main()
