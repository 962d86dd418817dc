"""The repo's data layout, relative to the repo root (DVC runs every stage from there).

These mirror the deps/outs in `dvc.yaml`; change both together.
"""

from pathlib import Path

RAW_DIR = Path("data/raw")  # Kaggle layout: train_simplified/<word>.csv, test_simplified.csv
TRAIN_CSV_DIR = RAW_DIR / "train_simplified"
TEST_CSV = RAW_DIR / "test_simplified.csv"
TEST_SOLUTION_CSV = RAW_DIR / "test_solution.csv"  # only for sources with known test labels
DOWNLOAD_CACHE_DIR = Path("data/cache")  # Kaggle zips; kept across runs, not a DVC output

PROCESSED_DIR = Path("data/processed")
STORE_PATH = PROCESSED_DIR / "drawings.zarr"  # groups train/, val/, test/
REJECTS_CSV = PROCESSED_DIR / "rejects.csv"

MODELS_DIR = Path("models")
MODEL_PATH = MODELS_DIR / "model.pt"  # best checkpoint by val/map3
CHECKPOINT_DIR = Path("checkpoints")  # persist: true, for resuming killed runs

METRICS_DIR = Path("metrics")  # one JSON per stage
DVCLIVE_DIR = Path("dvclive")  # training curves
REPORTS_DIR = Path("reports")  # evaluate: per-class table, confusion, gallery

SUBMISSION_CSV = Path("submissions/submission.csv")
