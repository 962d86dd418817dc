"""Stage `blend`: fit how the ensemble's members are combined, on drawings none of them chose on.

Inputs:  data/processed/drawings.zarr (the `blend` split), models/members/<name>/model.pt for each
         of `ensemble.members`, params `ensemble`.
Outputs: models/blend.npz (`pipeline.scoring.stacking.Blend`: plain arrays, no pickle),
         metrics/blend.json  blend/drawings; blend/<member>/{map3,top1,top3}, each member alone
                             on the blend split (held out from every member: honest figures);
                             blend/mean/...; blend/fit/... (the fitted blend on the drawings it
                             was fitted on: optimistic); weight/<member> for `weights`.
Run:     python -m pipeline.blend [--params params.yaml]   (or `dvc repro blend`)

`ensemble.method`: `logreg` (stacking, scikit-learn), `weights` (one weight per member) or
`mean` (no fitting; needs no blend split). See `pipeline.scoring.stacking`. The members named in
`ensemble.flip_tta` are predicted with the mirror TTA (each drawing and its left-right mirror,
averaged); the blend file records it, so evaluate, predict and the server predict them alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline.common.cli import stage_main
from pipeline.common.config import EnsembleConfig
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.common.runtime import use_torch_threads
from pipeline.core.store import DrawingStore
from pipeline.models.predictor import Predictor
from pipeline.scoring.metrics import scores
from pipeline.scoring.stacking import fit_blend

log = logging.getLogger(__name__)


def run(cfg: EnsembleConfig, paths: Paths) -> dict[str, Any]:
    """Fit the blend on the blend split; write it and the metrics; return the metrics."""
    started = time.perf_counter()
    use_torch_threads(cfg.threads)
    store = DrawingStore(paths.store_path)
    drawings = store.split("blend").read()
    labels = drawings.labels.astype(np.int64)
    predictor = Predictor.load(paths, store.classes, members=cfg.members, flip=cfg.flip_tta)
    probas = list(predictor.member_probas(drawings, cfg.batch_size, split="blend").values())
    blend = fit_blend(
        probas,
        labels,
        cfg.members,
        cfg.method,
        cfg.regularization,
        classes=store.classes,
        flip=cfg.flip_tta,
    )
    blend.save(paths.blend_path)

    metrics: dict[str, Any] = {"blend/drawings": len(drawings), "members": len(cfg.members)}
    if len(drawings):
        for name, proba in zip(cfg.members, probas, strict=True):
            metrics |= scores(proba, labels, f"blend/{name}")
        metrics |= scores(np.mean(probas, axis=0), labels, "blend/mean")
        metrics |= scores(blend.combine(probas), labels, "blend/fit")
    if cfg.method == "weights":
        metrics |= {f"weight/{n}": float(w) for n, w in zip(cfg.members, blend.coef, strict=True)}
    metrics["time_s"] = round(time.perf_counter() - started, 3)
    write_json(paths.metrics_path("blend"), metrics)
    log.info(
        "blend (%s) of %s on %s drawings -> %s",
        cfg.method,
        ", ".join(cfg.members),
        f"{len(drawings):,}",
        paths.blend_path,
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    stage_main("ensemble", run, argv, __doc__)


if __name__ == "__main__":
    main()
