"""Check `submissions/submission.csv` and submit it to the Kaggle competition (not a DVC stage).

The check compares the file with `data/raw/test_simplified.csv` and the class list (the file
names in `data/raw/train_simplified/`) and refuses, with one line and exit code 2, a wrong
header, a missing / extra / duplicate key_id, anything but three distinct known labels, or a
class name whose spaces are not written as `_`. Then it calls the kaggle API's competition
submit (needs ~/.kaggle/kaggle.json and the accepted competition rules).

Run: `python -m pipeline.submit -m "bilstm, 30 epochs"`; `--dry-run` checks only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.config import DownloadConfig, load_section
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.scoring.submission import validate_submission
from pipeline.sources import kaggle as kaggle_api

log = logging.getLogger(__name__)

# What kaggle 2.x returns (instead of raising) when the file upload itself failed.
UPLOAD_FAILED = "Could not submit to competition"


def main(argv: list[str] | None = None) -> None:
    paths = Paths.under(".")
    parser = stage_parser(__doc__)
    parser.add_argument("-m", "--message", default="", help="submission description on Kaggle")
    parser.add_argument("--dry-run", action="store_true", help="validate only, do not submit")
    parser.add_argument("--file", type=Path, default=paths.submission_csv)
    parser.add_argument("--competition", help="default: download.competition from --params")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.message.strip():
        parser.error('say what this submission is: -m "message" (or check only with --dry-run)')
    with user_errors():
        competition = args.competition
        if competition is None and not args.dry_run:
            competition = load_section("download", DownloadConfig, args.params).competition
        run(args.file, args.message, competition, paths, dry_run=args.dry_run)


def run(
    file: Path,
    message: str,
    competition: str | None,
    paths: Paths,
    dry_run: bool = False,
    api: Any = None,
) -> int:
    """Validate `file`; unless `dry_run`, submit it. Returns the number of rows."""
    n_rows = validate_submission(file, paths.test_csv, read_classes(paths))
    log.info("%s: %s rows, format OK", file, f"{n_rows:,}")
    if dry_run:
        print(f"{file}: {n_rows:,} rows, valid (dry run, not submitted)")
        return n_rows
    if not competition:
        raise PipelineError("no competition given; set download.competition or pass --competition")
    api = api if api is not None else kaggle_api.get_api()
    response = kaggle_api.kaggle_call(
        api.competition_submit,
        file_name=str(file),
        message=message,
        competition=competition,
        quiet=False,
    )
    reply = str(getattr(response, "message", "") or "")
    if reply == UPLOAD_FAILED:
        raise PipelineError(
            f"Kaggle did not accept the upload of {file} ({reply}); check your network and rerun"
        )
    print(f"submitted {file} to {competition}: {kaggle_api.redact(reply) or 'OK'}")
    return n_rows


def read_classes(paths: Paths) -> list[str]:
    """Class names: the training file names, else the processed store's `classes` attr."""
    classes = sorted(p.stem for p in paths.train_csv_dir.glob("*.csv"))
    if classes:
        return classes
    if (paths.store_path / "zarr.json").is_file():
        from pipeline.core.store import DrawingStore  # zarr is slow to import; only when needed

        return DrawingStore(paths.store_path).classes
    raise PipelineError(
        f"no class list: {paths.train_csv_dir} is empty; run `dvc repro download` first"
    )


if __name__ == "__main__":
    main()
