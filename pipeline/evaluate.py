"""Stage `evaluate`: score the ensemble and each member on the validation split; show failures.

Inputs:  data/processed/drawings.zarr (val split), models/blend.npz and the members it names
         (models/members/<name>/model.pt), params `evaluate`.
Outputs: metrics/evaluate.json   val/map3, val/top1, val/top3 of the blend (what predict writes);
                                 val/prior/... the blend after prior correction; val/<member>/...
                                 each member alone; val/drawings, time_s, drawings_per_s
         reports/per_class.csv   class, n, top1, map3, confused_with, confused_n (worst first)
         reports/confusion.json  the matrix of the (at most 16) most confused classes, one
                                 {"actual", "predicted", "count"} record per cell
         reports/confusions.json the 30 most frequent mistakes, "actual -> predicted" (bar chart)
         reports/gallery.png     the most confidently wrong drawings, "true -> predicted"
         (all of the blend), and reports/curves.tsv: every member's training curves (dvclive/
         <member>/curves.tsv) in one table with a `member` column, for `dvc plots`
Run:     python -m pipeline.evaluate [--params params.yaml]   (or `dvc repro evaluate`)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline.common.cli import stage_main
from pipeline.common.config import EvaluateConfig
from pipeline.common.errors import PipelineError
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.common.runtime import use_torch_threads
from pipeline.core.store import DrawingStore
from pipeline.models.predictor import Predictor
from pipeline.scoring.metrics import (
    confusion_counts,
    per_class_table,
    scores,
    scores_of_top,
    topk_indices,
)
from pipeline.scoring.prior import correct_priors
from pipeline.scoring.reports import (
    confusion_records,
    most_confident_mistakes,
    render_gallery,
    top_confusions,
    write_member_curves,
    write_per_class,
    write_records,
)

log = logging.getLogger(__name__)


def run(cfg: EvaluateConfig, paths: Paths) -> dict[str, Any]:
    """Predict the val split, write the metrics and reports, return the metrics."""
    started = time.perf_counter()
    use_torch_threads(cfg.threads)
    store = DrawingStore(paths.store_path)
    drawings = store.split("val").read()
    if len(drawings) == 0:
        raise PipelineError("the val split is empty; set preprocess.val_per_class > 0")
    labels = drawings.labels.astype(np.int64)

    infer_start = time.perf_counter()  # loading the models included, as in every run
    predictor = Predictor.load(paths, store.classes)
    members = list(predictor.members)
    log.info("evaluating %s on %s val drawings", ", ".join(members), f"{len(drawings):,}")
    out = predictor.predict(drawings, cfg.batch_size, split="val")
    proba = out.blend  # (N, C)
    infer_s = time.perf_counter() - infer_start
    top = topk_indices(proba, 3)  # (N, 3)

    classes = store.classes
    write_per_class(paths.reports_dir / "per_class.csv", per_class_table(top, labels, classes))
    confusion = confusion_counts(labels, top[:, 0], len(classes))  # (C, C)
    write_records(paths.reports_dir / "confusion.json", confusion_records(confusion, classes))
    write_records(paths.reports_dir / "confusions.json", top_confusions(confusion, classes))
    wrong = most_confident_mistakes(proba, top[:, 0], labels, cfg.gallery_size)
    captions = [
        (classes[labels[i]], f"{classes[top[i, 0]]} {proba[i, top[i, 0]]:.0%}") for i in wrong
    ]
    render_gallery(drawings.take(wrong), captions, paths.reports_dir / "gallery.png")
    curves = {m: paths.for_member(m).curves_path for m in members}
    write_member_curves(paths.reports_dir / "curves.tsv", curves)

    metrics = {
        **scores_of_top(top, labels, "val"),
        **scores(correct_priors(proba), labels, "val/prior"),
        **{
            k: v
            for name, p in out.members.items()
            for k, v in scores(p, labels, f"val/{name}").items()
        },
        "val/drawings": len(drawings),
        "time_s": round(time.perf_counter() - started, 3),
        "drawings_per_s": round(len(drawings) / max(infer_s, 1e-9), 1),
    }
    write_json(paths.metrics_path("evaluate"), metrics)
    log.info(
        "val MAP@3 %.4f, top-1 %.4f, top-3 %.4f; %s drawings/s",
        metrics["val/map3"],
        metrics["val/top1"],
        metrics["val/top3"],
        f"{metrics['drawings_per_s']:,.0f}",
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    stage_main("evaluate", run, argv, __doc__)


if __name__ == "__main__":
    main()
