"""Source `kaggle`: the competition's files through the real `kaggle` client.

Only `train_simplified.zip` and `test_simplified.csv` (and the sample submission; never the
65 GB raw files) are fetched into `data/cache/<competition>/`, so a rerun skips what is
complete; the zip is checked member by member (no absolute paths, `..`, symlinks or duplicate
names) before anything is extracted.

Downloads go through the client's own `competition_download_file`, which already does what a
long download needs: it calls DownloadDataFile, follows the 302 to the file, streams it to disk
beside a `.kaggle-partial` marker that records the file's ETag and size, and on a later run (or
after a dropped connection) asks for the rest with `Range: bytes=<have>-` and `If-Range`, so a
partial file is resumed, not started over. Writing our own GET of the redirected URL would only
repeat that, so this module adds what the client lacks around it: each file is downloaded into
`data/cache/<competition>/.partial/<name>/` and moved into the cache only when its size matches
Kaggle's listing (never a half file under its final name); a 429 / 5xx / dropped connection is
retried with backoff (`kaggle_client.kaggle_call`), each retry resuming; every failure is one
line. The client and its errors live in `pipeline.sources.kaggle_client`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.common.errors import PipelineError
from pipeline.common.progress import progress
from pipeline.core.layout import (
    SAMPLE_SUBMISSION,
    TEST_COLUMNS,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    check_header,
    copy_file,
    layout_stats,
)
from pipeline.sources.kaggle_client import IncompleteDownload, get_api, kaggle_call

log = logging.getLogger(__name__)

TRAIN_ZIP = "train_simplified.zip"
PARTIAL_DIR = ".partial"


def fetch_kaggle(competition: str, cache_dir: Path, api: Any = None) -> dict[str, Path]:
    """Download what the pipeline needs into `cache_dir`, skipping files already complete.

    Returns {Kaggle file name: cached path}. Only `train_simplified` (one zip, or its CSVs if
    Kaggle lists them one by one), `test_simplified.csv` and the sample submission.
    """
    api = api if api is not None else get_api()
    listing = list_competition_files(api, competition)
    wanted = _train_names(listing)
    if not wanted:
        raise PipelineError(
            f"Kaggle lists no train_simplified files for '{competition}'; check "
            "download.competition (quickdraw-doodle-recognition)"
        )
    if TEST_FILE not in listing:
        raise PipelineError(
            f"Kaggle lists no {TEST_FILE} for '{competition}'; check the competition"
        )
    wanted.append(TEST_FILE)
    if SAMPLE_SUBMISSION in listing:
        wanted.append(SAMPLE_SUBMISSION)
    fetched = {
        name: _fetch_file(api, competition, name, listing[name], cache_dir) for name in wanted
    }
    _remove_empty_dirs(cache_dir / PARTIAL_DIR)
    return fetched


def _remove_empty_dirs(root: Path) -> None:
    """Drop `root` and the folders under it that hold nothing (done downloads' staging)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def _train_names(listing: dict[str, int]) -> list[str]:
    """The zip if listed, else the one-by-one `train_simplified/<word>.csv` files."""
    if TRAIN_ZIP in listing:
        return [TRAIN_ZIP]
    parts = {name: PurePosixPath(name).parts for name in listing}
    return sorted(
        name
        for name, p in parts.items()
        if len(p) == 2 and p[0] == "train_simplified" and p[1].endswith(".csv")
    )


def list_competition_files(api: Any, competition: str) -> dict[str, int]:
    """{file name: size in bytes (0 if unknown)} over all pages of the competition's files."""
    files: dict[str, int] = {}
    token = None
    while True:
        kwargs = {"page_token": token} if token else {}
        response = kaggle_call(api.competition_list_files, competition=competition, **kwargs)
        for entry in getattr(response, "files", None) or []:
            size = getattr(entry, "total_bytes", None) or getattr(entry, "totalBytes", 0)
            files[str(entry.name)] = int(size or 0)
        token = getattr(response, "next_page_token", None)
        if not token:
            return files


def _fetch_file(api: Any, competition: str, name: str, size: int, cache_dir: Path) -> Path:
    """`cache_dir/name`, downloaded (or resumed) unless it is already there at the listed size."""
    target = cache_dir / name
    if target.is_file() and (size == 0 or target.stat().st_size == size):
        log.info("%s: already complete (%s bytes), skipping", target, f"{target.stat().st_size:,}")
        return target
    staging = cache_dir / PARTIAL_DIR / name  # kept across runs, so the client can resume
    staging.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%s bytes) from Kaggle", name, f"{size:,}")

    def download(competition: str) -> Path:
        try:
            api.competition_download_file(
                competition=competition, file_name=name, path=str(staging), quiet=False
            )
        except ValueError as err:  # the client's own check of the size it was sent
            if "does not match expected size" not in str(err):
                raise
            raise IncompleteDownload(f"the download of {name} ended early") from None
        got = _downloaded_file(staging, name)
        have = got.stat().st_size
        if size and have != size:
            if have > size:  # not a prefix of the listed file: start that one over
                got.unlink()
            raise IncompleteDownload(f"{got}: got {have:,} of the {size:,} bytes Kaggle lists")
        return got

    try:
        got = kaggle_call(download, competition=competition)
    except OSError as err:  # the client's writes (its HTTP errors are handled by kaggle_call)
        raise PipelineError(
            f"cannot write {staging} ({err.strerror or type(err).__name__}); free some disk "
            "space and rerun `dvc repro download` (it resumes)"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _downloaded_file(staging: Path, name: str) -> Path:
    """The file the kaggle client wrote; unwraps `<name>.zip` when Kaggle zipped a single file."""
    base = PurePosixPath(name).name
    files = [p for p in staging.iterdir() if p.is_file() and not p.name.endswith("-partial")]
    if (staging / base).is_file():
        return staging / base
    zipped = staging / f"{base}.zip"
    if zipped.is_file() and not base.endswith(".zip"):
        with _open_zip(zipped) as zf:
            members = [m for m in safe_members(zipped, zf) if not m.is_dir()]
            if len(members) != 1:
                raise PipelineError(f"{zipped}: expected one file inside, found {len(members)}")
            _extract_member(zipped, zf, members[0], staging / base)
        zipped.unlink()
        return staging / base
    if len(files) == 1:  # the client names files after the URL (e.g. 'paint%20can.csv')
        return files[0]
    raise PipelineError(f"Kaggle download of {name} left no file in {staging}; rerun the stage")


def install_kaggle(fetched: dict[str, Path], out_dir: Path) -> dict[str, int]:
    """Lay the cached competition files out in `out_dir` (safe zip extraction, copies)."""
    train_dir = out_dir / TRAIN_DIR
    train_dir.mkdir()
    if TRAIN_ZIP in fetched:
        extract_csvs(fetched[TRAIN_ZIP], train_dir)
    else:
        for name, path in fetched.items():
            if name.startswith("train_simplified/"):
                copy_file(path, train_dir / PurePosixPath(name).name)
    for path in sorted(train_dir.glob("*.csv")):
        check_header(path, TRAIN_COLUMNS)
    check_header(fetched[TEST_FILE], TEST_COLUMNS)
    copy_file(fetched[TEST_FILE], out_dir / TEST_FILE)
    return layout_stats(out_dir)


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise _corrupt(zip_path, err) from None


def _corrupt(zip_path: Path, err: BaseException) -> PipelineError:
    return PipelineError(
        f"{zip_path} is truncated or corrupt ({err}); delete it and rerun `dvc repro download`"
    )


def safe_members(zip_path: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """All members, after refusing any absolute path, `..` component or symlink."""
    members = zf.infolist()
    for m in members:
        name = m.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise PipelineError(f"{zip_path}: member {m.filename!r} has an absolute path; refusing")
        if ".." in PurePosixPath(name).parts:
            raise PipelineError(f"{zip_path}: member {m.filename!r} escapes the folder; refusing")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise PipelineError(f"{zip_path}: member {m.filename!r} is a symlink; refusing")
    return members


def extract_csvs(zip_path: Path, dest_dir: Path) -> int:
    """Extract the zip's `*.csv` members flat into `dest_dir`; checks every member first."""
    with _open_zip(zip_path) as zf:
        members = [m for m in safe_members(zip_path, zf) if not m.is_dir()]
        csvs = [m for m in members if m.filename.endswith(".csv")]
        names = [PurePosixPath(m.filename.replace("\\", "/")).name for m in csvs]
        if not csvs:
            raise PipelineError(f"{zip_path} holds no .csv files; delete it and rerun")
        if len(set(names)) != len(names):
            raise PipelineError(f"{zip_path}: two members share a file name; refusing")
        bar = progress(csvs, desc=f"extract {zip_path.name}", unit="file")
        for m, name in zip(bar, names, strict=True):
            _extract_member(zip_path, zf, m, dest_dir / name)
    return len(csvs)


def _extract_member(
    zip_path: Path, zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path
) -> None:
    try:
        with zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        dest.unlink(missing_ok=True)
        raise _corrupt(zip_path, err) from None
