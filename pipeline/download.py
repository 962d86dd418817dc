"""Stage `download`: put the drawings in `data/raw/` in Kaggle's layout, whatever the source.

Inputs:  `download.source` (`pipeline/sources/`): `synthetic` (default, no network), `local`
         (`download.path` in Kaggle layout), `ndjson` (`download.path` of Google's files) or
         `kaggle` (the competition; zips cached in `data/cache/<competition>/`).
Outputs: data/raw/train_simplified/<word>.csv, data/raw/test_simplified.csv, and
         data/raw/test_solution.csv where the test labels are known (written atomically);
         metrics/download.json.
Run:     python -m pipeline.download [--params params.yaml]   (or `dvc repro download`)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.common.cli import stage_main
from pipeline.common.config import DownloadConfig
from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_dir, write_json
from pipeline.common.paths import Paths
from pipeline.sources import kaggle
from pipeline.sources.local import copy_local
from pipeline.sources.ndjson import convert_ndjson
from pipeline.sources.synthetic import write_synthetic

log = logging.getLogger(__name__)


def _synthetic(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return write_synthetic(
        out_dir,
        cfg.synthetic_classes,
        cfg.synthetic_train_per_class,
        cfg.synthetic_test_per_class,
        cfg.seed,
    )


def _local(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return copy_local(source_dir(cfg), out_dir)


def _ndjson(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return convert_ndjson(source_dir(cfg), out_dir, cfg.test_fraction, cfg.seed)


def _kaggle(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    fetched = kaggle.fetch_kaggle(cfg.competition, paths.cache_dir / cfg.competition)
    return kaggle.install_kaggle(fetched, out_dir)


SOURCES: dict[str, Callable[[DownloadConfig, Path, Paths], dict[str, int]]] = {
    "synthetic": _synthetic,
    "local": _local,
    "ndjson": _ndjson,
    "kaggle": _kaggle,
}


def run(cfg: DownloadConfig, paths: Paths) -> dict[str, Any]:
    """Fill `paths.raw_dir` from `cfg.source`; write and return the metrics."""
    start = time.perf_counter()
    with atomic_dir(paths.raw_dir) as out_dir:  # a failure leaves the old data/raw as it was
        stats = SOURCES[cfg.source](cfg, out_dir, paths)
    elapsed = time.perf_counter() - start
    rows = stats["train/rows"] + stats["test/rows"]
    metrics = {
        "source": cfg.source,
        **stats,
        "time_s": round(elapsed, 2),
        "drawings_per_s": round(rows / max(elapsed, 1e-9), 1),
    }
    write_json(paths.metrics_path("download"), metrics)
    log.info(
        "download (%s): %s train files, %s train rows, %s test rows",
        cfg.source,
        f"{stats['train/files']:,}",
        f"{stats['train/rows']:,}",
        f"{stats['test/rows']:,}",
    )
    return metrics


def source_dir(cfg: DownloadConfig) -> Path:
    if not cfg.path:
        raise PipelineError(
            f"download.source={cfg.source} needs download.path; set it in params.yaml "
            f"or run `dvc exp run -S download.path=/path/to/folder`"
        )
    return Path(cfg.path).expanduser()


def main(argv: list[str] | None = None) -> None:
    stage_main("download", run, argv, __doc__)


if __name__ == "__main__":
    main()
