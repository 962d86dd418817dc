"""The competition the rehearsal stands in for (Kaggle's quickdraw-doodle-recognition): its sizes,
its 340 classes, and the rehearsal's own fixed split sizes."""

from __future__ import annotations

import logging

from benchmarks.kaggle16 import SHARED_QUICKDRAW
from pipeline.common.errors import PipelineError

# One logger for every module of the rehearsal, so its log reads as one program's.
log = logging.getLogger("benchmarks.rehearsal")

NDJSON345_DIR = SHARED_QUICKDRAW / "ndjson345"

KAGGLE_TRAIN = 49_707_579
KAGGLE_TEST = 112_199
KAGGLE_CLASSES = 340
KAGGLE_CSV_GB = 23  # train_simplified's CSVs as docs/scale.md states them: stated, not measured
NOT_IN_KAGGLE = ("aircraft carrier", "knife", "lighter", "rifle", "syringe")

# preprocess.val_per_class and blend_per_class of every run: 17,000 drawings each over the 340
# classes, so evaluate and blend run at the sizes of a full run's splits.
VAL_PER_CLASS = 50
BLEND_PER_CLASS = 50


def kaggle_classes() -> list[str]:
    """The competition's 340 words: ndjson345's file names less `NOT_IN_KAGGLE`, sorted."""
    words = sorted(p.stem for p in NDJSON345_DIR.glob("*.ndjson"))
    if not words:
        raise PipelineError(f"no {NDJSON345_DIR}/*.ndjson; set QUICKDRAW_SHARED to the real data")
    classes = [w for w in words if w not in NOT_IN_KAGGLE]
    if len(words) != 345 or len(classes) != KAGGLE_CLASSES:
        raise PipelineError(f"{NDJSON345_DIR} has {len(words)} classes; expected 345 of them")
    return classes
