"""Stage `predict`: answer every row of `test_simplified.csv`, in file order, with three labels.

Inputs:  data/processed/drawings.zarr (test split), models/model.pt (+ `predict.ensemble`
         checkpoints), params `predict`.
Outputs: submissions/submission.csv  key_id,word in test-file order (Kaggle format)
         metrics/predict.json        test/rows, fallback_rows, time_s, drawings_per_s, and
                                     test/map3, test/top1, test/top3 when test labels are known
Run:     python -m pipeline.predict [--params params.yaml]   (or `dvc repro predict`)

Options (each a param, measured in the README):
  ensemble          average the probabilities of models/model.pt and these checkpoints
  tta               average in this many augmented passes per model
  prior_correction  reweight classes so the (balanced) test set is predicted balanced
A row that could not be parsed (stored empty, valid=False) gets the three most frequent
training classes and is counted in `fallback_rows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.cli import set_seed, stage_main
from pipeline.common.config import PredictConfig
from pipeline.common.errors import PipelineError
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.core.store import DrawingStore, SplitReader
from pipeline.models.checkpoint import check_classes, load_model
from pipeline.models.inference import predict_proba
from pipeline.scoring.metrics import scores_of_top, topk_indices
from pipeline.scoring.prior import correct_priors
from pipeline.scoring.submission import write_submission

log = logging.getLogger(__name__)


def run(cfg: PredictConfig, paths: Paths) -> dict[str, Any]:
    """Write the submission and the predict metrics; return the metrics."""
    started = time.perf_counter()
    set_seed(cfg.seed)
    store = DrawingStore(paths.store_path)
    classes = store.classes
    if len(classes) < 3:
        raise PipelineError(
            f"a submission needs 3 labels per row but the store has {len(classes)} classes; "
            "download more classes"
        )
    reader = store.split("test")
    test = reader.read()
    usable = test.column("valid") & (test.lengths > 0)
    n_fallback = int((~usable).sum())
    if n_fallback:
        log.warning("%s test rows could not be parsed; they get the most frequent classes",
                    f"{n_fallback:,}")  # fmt: skip

    model_paths = [paths.model_path, *(Path(p) for p in cfg.ensemble)]
    infer_start = time.perf_counter()
    proba = ensemble_proba(model_paths, test.take(np.flatnonzero(usable)), classes,
                           cfg.batch_size, cfg.tta, cfg.seed)  # fmt: skip  # (N_usable, C)
    if cfg.prior_correction:
        proba = correct_priors(proba)
    infer_s = time.perf_counter() - infer_start

    top = np.empty((len(test), 3), dtype=np.int64)  # (N, 3) in test-file order
    top[:] = fallback_classes(store)
    top[usable] = topk_indices(proba, 3)
    words = np.asarray(classes, dtype=object)[top]  # (N, 3)
    n_rows = write_submission(paths.submission_csv, key_strings(reader), words)

    metrics: dict[str, Any] = {
        "test/rows": n_rows,
        "fallback_rows": n_fallback,
        "models": len(model_paths),
        "time_s": round(time.perf_counter() - started, 3),
        "drawings_per_s": round(int(usable.sum()) / max(infer_s, 1e-9), 1),
    }
    labelled = test.labels >= 0
    if labelled.any():  # offline sources know the answers: score the submission itself
        labels = test.labels[labelled].astype(np.int64)
        metrics |= scores_of_top(top[labelled], labels, "test")
        metrics["test/labelled"] = int(labelled.sum())
    write_json(paths.metrics_path("predict"), metrics)
    log.info("wrote %s rows to %s (%s fallback)", f"{n_rows:,}", paths.submission_csv,
             f"{n_fallback:,}")  # fmt: skip
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
        if i > 0 and not Path(path).is_file():
            raise PipelineError(f"predict.ensemble: no checkpoint at {path}; fix or remove it")
        model, meta = load_model(path)
        check_classes(meta["classes"], classes, path)
        total += predict_proba(model, meta, drawings, batch_size, tta=tta, seed=seed,
                               desc=Path(path).name)  # fmt: skip
    return total / len(model_paths)


def key_strings(test: SplitReader) -> np.ndarray:
    """The test key_ids as the submission writes them: a key_id that is not a number (stored
    as -1) comes back exactly as the test file wrote it."""
    keys = test.key_ids.astype(str).astype(object)
    for row, text in test.group.attrs.get("key_text", {}).items():
        keys[int(row)] = text
    return keys


def fallback_classes(store: DrawingStore) -> np.ndarray:
    """The three most frequent training classes (ties by class order), for unreadable rows."""
    counts = store.attrs["counts"]["train"]
    n_train = np.array([counts[c] for c in store.classes], dtype=np.float64)
    return topk_indices(n_train[None, :], 3)[0]


def main(argv: list[str] | None = None) -> None:
    stage_main("predict", run, argv, __doc__)


if __name__ == "__main__":
    main()
