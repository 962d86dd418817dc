"""The repo's data layout: one `Paths` holds every input and output location of every stage.

DVC runs each stage from the repo root, so `Paths.under(".")` is what stages use; tests build
`Paths.under(tmp_path)` and benchmarks replace single folders (`dataclasses.replace(paths,
raw_dir=...)`). `dvc.yaml` declares the same locations; `tests/test_dvc_yaml.py` checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

PARAMS_PATH = Path("params.yaml")
STAGES = ("download", "preprocess", "train", "blend", "evaluate", "predict")


@dataclass(frozen=True)
class Paths:
    raw_dir: Path  # Kaggle layout: train_simplified/<word>.csv, test_simplified.csv
    cache_dir: Path  # Kaggle downloads, kept across runs; not a DVC output
    processed_dir: Path  # drawings.zarr, rejects.csv
    models_dir: Path  # members/<name>/model.pt (one per train stage), blend.npz
    checkpoint_dir: Path  # resume state of a train stage (not a DVC output)
    live_dir: Path  # dvclive: training curves and the train stage's metrics
    reports_dir: Path  # evaluate: per-class table, confusion, gallery
    metrics_dir: Path  # one JSON per stage (train's is live_dir/metrics.json)
    submissions_dir: Path

    @classmethod
    def under(cls, root: Path | str = ".") -> Paths:
        root = Path(root)
        return cls(
            raw_dir=root / "data" / "raw",
            cache_dir=root / "data" / "cache",
            processed_dir=root / "data" / "processed",
            models_dir=root / "models",
            checkpoint_dir=root / "checkpoints",
            live_dir=root / "dvclive",
            reports_dir=root / "reports",
            metrics_dir=root / "metrics",
            submissions_dir=root / "submissions",
        )

    def for_member(self, name: str) -> Paths:
        """The locations train stage `train@<name>` writes: its model, curves and checkpoints."""
        return replace(
            self,
            models_dir=self.members_dir / name,
            checkpoint_dir=self.checkpoint_dir / name,
            live_dir=self.live_dir / name,
        )

    @property
    def curves_path(self) -> Path:  # a train stage's curves: a row per validation (dvclive dir)
        return self.live_dir / "curves.tsv"

    @property
    def members_dir(self) -> Path:  # every member's model; the blend stage's dep
        return self.models_dir / "members"

    @property
    def blend_path(self) -> Path:  # the blend stage's fitted combination of the members
        return self.models_dir / "blend.npz"

    @property
    def train_csv_dir(self) -> Path:
        return self.raw_dir / "train_simplified"

    @property
    def test_csv(self) -> Path:
        return self.raw_dir / "test_simplified.csv"

    @property
    def test_solution_csv(self) -> Path:  # only for sources with known test labels
        return self.raw_dir / "test_solution.csv"

    @property
    def store_path(self) -> Path:  # groups train/, val/, test/
        return self.processed_dir / "drawings.zarr"

    @property
    def rejects_csv(self) -> Path:
        return self.processed_dir / "rejects.csv"

    @property
    def model_path(self) -> Path:  # the best checkpoint by val/map3 (see `for_member`)
        return self.models_dir / "model.pt"

    @property
    def submission_csv(self) -> Path:
        return self.submissions_dir / "submission.csv"

    @property
    def submit_metrics_path(self) -> Path:  # `pipeline.submit` (a command, not a stage)
        return self.metrics_dir / "submit.json"

    def metrics_path(self, stage: str) -> Path:
        """The metrics file `stage` writes (dvc.yaml's `metrics:` entry)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
        if stage == "train":  # dvclive writes the training summary beside its curves
            return self.live_dir / "metrics.json"
        return self.metrics_dir / f"{stage}.json"
