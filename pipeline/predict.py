"""Stage `predict`: answer every row of `test_simplified.csv`, in file order, with three labels.

Inputs:  data/processed/drawings.zarr (test split), models/blend.npz and the members it names
         (models/members/<name>/model.pt), params `predict`.
Outputs: submissions/submission.csv  key_id,word in test-file order (Kaggle format): the blend's
                                     top 3
         metrics/predict.json        test/rows, fallback_rows, time_s, drawings_per_s; when the
                                     test labels are known, test/map3, test/top1, test/top3 of the
                                     submission, and test/<x>/map3, test/<x>/prior/map3 for x = each
                                     member, `mean` (of probabilities) and `blend`
Run:     python -m pipeline.predict [--params params.yaml]   (or `dvc repro predict`)

Options (each a param, measured in the README):
  tta               average in this many augmented passes per member
  prior_correction  reweight classes so the (balanced) test set is predicted balanced
A row that could not be parsed (stored empty, valid=False) gets the three most frequent
training classes and is counted in `fallback_rows`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline.common.cli import stage_main
from pipeline.common.config import PredictConfig
from pipeline.common.errors import PipelineError
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.common.runtime import set_seed, use_torch_threads
from pipeline.core.store import DrawingStore, SplitReader
from pipeline.models.predictor import Predictor
from pipeline.scoring.metrics import map_at_k, scores_of_top, topk_indices
from pipeline.scoring.prior import correct_priors
from pipeline.scoring.submission import write_submission

log = logging.getLogger(__name__)


def run(cfg: PredictConfig, paths: Paths) -> dict[str, Any]:
    """Write the submission and the predict metrics; return the metrics."""
    started = time.perf_counter()
    set_seed(cfg.seed)
    use_torch_threads(cfg.threads)
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
        log.warning(
            "%s test rows could not be parsed; they get the most frequent classes",
            f"{n_fallback:,}",
        )

    infer_start = time.perf_counter()  # loading the models included
    predictor = Predictor.load(paths, classes)
    out = predictor.predict(
        test.take(np.flatnonzero(usable)), cfg.batch_size, cfg.tta, cfg.seed, split="test"
    )
    blended = out.blend  # (N_usable, C)
    proba = correct_priors(blended) if cfg.prior_correction else blended
    infer_s = time.perf_counter() - infer_start

    top = np.empty((len(test), 3), dtype=np.int64)  # (N, 3) in test-file order
    top[:] = fallback_classes(store)
    top[usable] = topk_indices(proba, 3)
    words = np.asarray(classes, dtype=object)[top]  # (N, 3)
    n_rows = write_submission(paths.submission_csv, key_strings(reader), words)

    metrics: dict[str, Any] = {
        "test/rows": n_rows,
        "fallback_rows": n_fallback,
        "members": len(out.members),
        "time_s": round(time.perf_counter() - started, 3),
        "drawings_per_s": round(int(usable.sum()) / max(infer_s, 1e-9), 1),
    }
    labelled = test.labels >= 0
    if labelled.any():  # offline sources know the answers: score the submission itself
        labels = test.labels[labelled].astype(np.int64)
        metrics |= scores_of_top(top[labelled], labels, "test")
        metrics["test/labelled"] = int(labelled.sum())
        metrics |= option_scores(out.members, blended, test.labels[usable].astype(np.int64))
    write_json(paths.metrics_path("predict"), metrics)
    log.info(
        "wrote %s rows to %s (%s fallback)", f"{n_rows:,}", paths.submission_csv, f"{n_fallback:,}"
    )
    return metrics


def option_scores(
    probas: dict[str, np.ndarray], blended: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """MAP@3 of each member alone, of the mean of probabilities and of the blend (`blended`,
    already combined), each with and without prior correction, on the labelled rows: what each
    option would have scored."""
    known = labels >= 0
    options = {name: p[known] for name, p in probas.items()}
    options |= {"mean": np.mean(list(options.values()), axis=0), "blend": blended[known]}
    out = {}
    for name, proba in options.items():
        out[f"test/{name}/map3"] = map_at_k(topk_indices(proba, 3), labels[known])
        corrected = correct_priors(proba)
        out[f"test/{name}/prior/map3"] = map_at_k(topk_indices(corrected, 3), labels[known])
    return out


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
