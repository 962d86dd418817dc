"""Check `submissions/submission.csv`, submit it to Kaggle, wait for its score (not a DVC stage).

The check compares the file with `data/raw/test_simplified.csv` and the class list (the file
names in `data/raw/train_simplified/`) and refuses, with one line and exit code 2, a wrong
header, a missing / extra / duplicate key_id, anything but three distinct known labels, or a
class name whose spaces are not written as `_`. Only then is the file uploaded with the kaggle
client's competition submit (StartSubmissionUpload, a PUT of the file, CreateSubmission: what
`kaggle competitions submit` does), and Kaggle's submission list is polled (with backoff, for at
most `--timeout` seconds) until the submission is scored.

Outputs: metrics/submit.json (`leaderboard/public_score`, `submission/ref`, `submission/status`,
`submission/message`, `submission/date`, ...), declared in dvc.yaml's top-level `metrics:` so
`dvc metrics show` lists the leaderboard score beside `val/map3`. It is written as soon as
Kaggle accepts the file (status PENDING) and again with the score.

Run: `python -m pipeline.submit -m "bilstm, 30 epochs"`; `--dry-run` checks only; `--no-wait`
does not wait for the score; `--status` waits for the submission in metrics/submit.json again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.config import DownloadConfig, load_section
from pipeline.common.errors import PipelineError
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.scoring.submission import validate_submission
from pipeline.sources.kaggle_client import Backoff, get_api, kaggle_call, redact

log = logging.getLogger(__name__)

# What kaggle 2.x returns (instead of raising) when the file upload itself failed.
UPLOAD_FAILED = "Could not submit to competition"
PENDING, COMPLETE, ERROR = "PENDING", "COMPLETE", "ERROR"
# Polling for the score: 2 s, 4 s, ... up to 30 s apart; --timeout bounds the total.
POLL = Backoff(attempts=1_000, base_s=2.0, cap_s=30.0)
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Result:
    """A submission as Kaggle reports it."""

    ref: int
    status: str  # PENDING, COMPLETE or ERROR
    public_score: float | None = None
    private_score: float | None = None
    date: str = ""
    error: str = ""


def main(argv: list[str] | None = None) -> None:
    paths = Paths.under(".")
    parser = stage_parser(__doc__)
    parser.add_argument("-m", "--message", default="", help="submission description on Kaggle")
    parser.add_argument("--dry-run", action="store_true", help="validate only, do not submit")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the score")
    parser.add_argument(
        "--status", action="store_true", help="wait for the score of the last submission again"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the score (default %(default)s)",
    )
    parser.add_argument("--file", type=Path, default=paths.submission_csv)
    parser.add_argument("--competition", help="default: download.competition from --params")
    args = parser.parse_args(argv)
    if not (args.dry_run or args.status) and not args.message.strip():
        parser.error('say what this submission is: -m "message" (or check only with --dry-run)')
    with user_errors():
        competition = args.competition
        if competition is None and not args.dry_run:
            competition = load_section("download", DownloadConfig, args.params).competition
        if args.status:
            refresh(competition, paths, args.timeout)
            return
        wait = None if args.no_wait else args.timeout
        run(args.file, args.message, competition, paths, dry_run=args.dry_run, wait_s=wait)


def run(
    file: Path,
    message: str,
    competition: str | None,
    paths: Paths,
    dry_run: bool = False,
    wait_s: float | None = DEFAULT_TIMEOUT_S,
    api: Any = None,
) -> Result | None:
    """Validate `file`; unless `dry_run`, submit it and (unless `wait_s` is None) wait up to
    `wait_s` seconds for its score. Returns what Kaggle last said about it."""
    n_rows = validate_submission(file, paths.test_csv, read_classes(paths))
    log.info("%s: %s rows, format OK", file, f"{n_rows:,}")
    if dry_run:
        print(f"{file}: {n_rows:,} rows, valid (dry run, not submitted)")
        return None
    if not competition:
        raise PipelineError("no competition given; set download.competition or pass --competition")
    api = api if api is not None else get_api()
    # Not retried on 5xx or a dropped connection: the submission may have been made (and each
    # one counts against the daily limit). kaggle_call still retries a 429.
    response = kaggle_call(
        api.competition_submit,
        file_name=str(file),
        message=message,
        competition=competition,
        quiet=False,
        idempotent=False,
    )
    reply = redact(str(getattr(response, "message", "") or ""))
    if reply == UPLOAD_FAILED:
        raise PipelineError(
            f"the upload of {file} to Kaggle failed (nothing was submitted); check your network "
            "and rerun"
        )
    ref = int(getattr(response, "ref", 0) or 0)
    print(f"submitted {file} to {competition} (submission {ref}): {reply or 'OK'}")
    record = {"file": str(file), "rows": n_rows, "message": message, "competition": competition}
    result = Result(ref, PENDING, date=_now())
    write_metrics(paths, result, record)
    if wait_s is not None and ref:
        result = wait_for_score(api, competition, ref, wait_s)
        write_metrics(paths, result, record)
    report(result, competition)
    return result


def refresh(competition: str | None, paths: Paths, timeout_s: float, api: Any = None) -> Result:
    """`--status`: wait again for the submission recorded in metrics/submit.json."""
    record = _read_metrics(paths)
    ref = int(record.get("submission/ref") or 0)
    if not ref:
        raise PipelineError(
            f"{paths.submit_metrics_path} names no submission; submit with "
            '`python -m pipeline.submit -m "..."` first'
        )
    competition = str(record.get("submission/competition") or competition or "")
    api = api if api is not None else get_api()
    result = wait_for_score(api, competition, ref, timeout_s)
    keep = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("submission/")}
    keep = {k: keep[k] for k in ("file", "rows", "message", "competition") if k in keep}
    write_metrics(paths, result, keep)
    report(result, competition)
    return result


def wait_for_score(api: Any, competition: str, ref: int, timeout_s: float) -> Result:
    """Poll ListSubmissions until submission `ref` is COMPLETE or ERROR, or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, POLL.attempts + 1):
        try:
            result = find_submission(api, competition, ref)
        except PipelineError as err:  # the submission stands; only its score is missing
            raise PipelineError(
                f"{err} (submission {ref} was made; `python -m pipeline.submit --status` "
                "fetches its score)"
            ) from None
        if result.status != PENDING:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return result
        wait = min(POLL.delay(attempt), left)
        log.info("submission %d is being scored; asking again in %.1f s", ref, wait)
        time.sleep(wait)
    return result


def find_submission(api: Any, competition: str, ref: int) -> Result:
    """What Kaggle's submission list (newest first) says about submission `ref`."""
    listing = kaggle_call(api.competition_submissions, competition=competition) or []
    for item in listing:
        if int(getattr(item, "ref", 0) or 0) != ref:
            continue
        status = getattr(getattr(item, "status", None), "name", str(getattr(item, "status", "")))
        date = getattr(item, "date", None)
        return Result(
            ref=ref,
            status=status if status in (COMPLETE, ERROR) else PENDING,
            public_score=_score(getattr(item, "public_score", None)),
            private_score=_score(getattr(item, "private_score", None)),
            date=date.isoformat(timespec="seconds") + "Z" if date else "",
            error=redact(str(getattr(item, "error_description", "") or "")),
        )
    return Result(ref, PENDING)  # not listed yet


def report(result: Result, competition: str) -> None:
    """Print the outcome; an ERROR (Kaggle could not score the file) is the user's to fix."""
    if result.status == COMPLETE:
        score = "none" if result.public_score is None else f"{result.public_score:.5f}"
        print(f"submission {result.ref}: public score {score}")
    elif result.status == ERROR:
        raise PipelineError(
            f"Kaggle could not score submission {result.ref} ({result.error or 'no reason given'}"
            f"); fix the file and submit again"
        )
    else:
        print(
            f"submission {result.ref} is still being scored; run `python -m pipeline.submit "
            f"--status` later (or `kaggle competitions submissions -c {competition}`)"
        )


def write_metrics(paths: Paths, result: Result, record: dict[str, Any]) -> None:
    """metrics/submit.json: the leaderboard score beside the submission it belongs to."""
    metrics: dict[str, Any] = {f"submission/{k}": v for k, v in record.items()}
    metrics |= {
        "submission/ref": result.ref,
        "submission/status": result.status,
        "submission/date": result.date or _now(),
    }
    if result.public_score is not None:
        metrics["leaderboard/public_score"] = result.public_score
    if result.private_score is not None:
        metrics["leaderboard/private_score"] = result.private_score
    write_json(paths.submit_metrics_path, metrics)


def _read_metrics(paths: Paths) -> dict[str, Any]:
    try:
        return json.loads(paths.submit_metrics_path.read_text())
    except (OSError, ValueError):
        return {}


def _score(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
