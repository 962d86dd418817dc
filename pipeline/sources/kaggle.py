"""Source `kaggle`: the competition's files through the `kaggle` client, and the client itself.

Only `train_simplified.zip` and `test_simplified.csv` (never the 65 GB raw files) are fetched
into `data/cache/<competition>/`, so a rerun skips what is complete; the zip is checked member
by member (no absolute paths, `..`, symlinks or duplicate names) before anything is extracted.

The client: `import kaggle` authenticates on import and prints help on failure, so nothing here
imports it until `get_api()` is called. Every call goes through `kaggle_call`, which maps
missing credentials, HTTP 401 / 403 / 404 and network errors to a `PipelineError` that says
what to do. Credential values are never printed, logged or put into an exception message.
`pipeline.submit` uses the same client.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import requests

from pipeline.common.cli import progress
from pipeline.common.errors import PipelineError
from pipeline.sources.layout import (
    SAMPLE_SUBMISSION,
    TEST_COLUMNS,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    check_header,
    layout_stats,
    link_or_copy,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRAIN_ZIP = "train_simplified.zip"

TOKEN_URL = "https://www.kaggle.com/settings/api"
NO_CREDENTIALS = (
    "no Kaggle credentials found; create an API token at " + TOKEN_URL + " and save kaggle.json "
    "as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY "
    "(or KAGGLE_API_TOKEN)"
)
BAD_CREDENTIALS = (
    "Kaggle rejected your credentials (HTTP 401); create a new API token at " + TOKEN_URL + " and "
    "update ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
# Env vars whose values are secrets (never shown; scrubbed from any message we build).
SECRET_ENV_VARS = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")


def rules_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/rules"


def get_api() -> Any:
    """Import and authenticate `kaggle.api.kaggle_api_extended.KaggleApi`, or explain what to do."""
    config_path = kaggle_json_path()
    if config_path is not None:
        warn_if_loose_permissions(config_path)
    # The package prints auth help (and a permissions warning) on import and on failure.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError:
            raise PipelineError(
                "the kaggle package is not installed; run `make setup` (pip install -r "
                "requirements.txt)"
            ) from None
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            if os.environ.get("KAGGLE_API_TOKEN"):  # set, but Kaggle said it is not active
                raise PipelineError(
                    "Kaggle did not accept KAGGLE_API_TOKEN (invalid or expired); create a new "
                    f"token at {TOKEN_URL}"
                ) from None
            raise PipelineError(NO_CREDENTIALS) from None
        except requests.RequestException as err:
            raise _translate(err, competition=None) from None
    return api


def kaggle_call(fn: Callable[..., T], *args: Any, competition: str, **kwargs: Any) -> T:
    """Call `fn(*args, competition=competition, **kwargs)`; Kaggle failures become PipelineError."""
    try:
        return fn(*args, competition=competition, **kwargs)
    except SystemExit:  # the package exits when it finds no credentials mid-call
        raise PipelineError(NO_CREDENTIALS) from None
    except requests.RequestException as err:
        raise _translate(err, competition=competition) from None


def _translate(err: requests.RequestException, competition: str | None) -> PipelineError:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    what = f"'{competition}'" if competition else "the competition"
    if status == 401:
        message = BAD_CREDENTIALS
    elif status == 403:
        url = rules_url(competition) if competition else "the competition's Rules tab"
        message = (
            f"Kaggle denied access to {what} (HTTP 403); accept the rules at {url} with the "
            "account of your API token, then rerun"
        )
    elif status == 404:
        message = (
            f"competition {what} not found on Kaggle (HTTP 404); check `download.competition` "
            "in params.yaml"
        )
    elif status == 429:
        message = "Kaggle is rate-limiting requests (HTTP 429); wait a few minutes and rerun"
    elif status is not None:  # the standard phrase, never the server's text (it may echo keys)
        known = status in {s.value for s in HTTPStatus}
        reason = HTTPStatus(status).phrase if known else type(err).__name__
        message = f"Kaggle API error (HTTP {status} {reason}); try again later"
    elif isinstance(err, requests.ConnectionError | requests.Timeout):
        message = "cannot reach kaggle.com; check your network connection or proxy, then rerun"
    else:
        message = f"Kaggle request failed ({type(err).__name__}); try again later"
    return PipelineError(redact(message))


def redact(text: str) -> str:
    """Replace any known credential value in `text` with '***' (belt and braces)."""
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return text


def _secret_values() -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    path = kaggle_json_path()
    if path is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            values.append(str(json.loads(path.read_text()).get("key", "")))
    # Short values would redact ordinary words; real keys and tokens are long.
    return [v for v in values if len(v) >= 8]


def kaggle_json_path() -> Path | None:
    """Where the kaggle package reads kaggle.json from (KAGGLE_CONFIG_DIR, ~/.kaggle, XDG)."""
    candidates = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        candidates.append(Path(os.environ["KAGGLE_CONFIG_DIR"]))
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        candidates += [Path.home() / ".kaggle", Path(xdg) / "kaggle"]
    for folder in candidates:
        path = folder / "kaggle.json"
        if path.is_file():
            return path
    return None


def warn_if_loose_permissions(path: Path) -> bool:
    """Warn (once per call) when kaggle.json is readable by group or others; True if loose."""
    if os.name == "nt":
        return False
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
        return True
    return False


# ---------------------------------------------------------------- the competition's files


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
    return {name: _fetch_file(api, competition, name, listing[name], cache_dir) for name in wanted}


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
    target = cache_dir / name
    if target.is_file() and (size == 0 or target.stat().st_size == size):
        log.info("%s: already complete (%s bytes), skipping", target, f"{target.stat().st_size:,}")
        return target
    staging = cache_dir / ".partial" / name  # kept across runs, so the kaggle client can resume
    staging.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%s bytes) from Kaggle", name, f"{size:,}")
    kaggle_call(
        api.competition_download_file,
        competition=competition,
        file_name=name,
        path=str(staging),
        quiet=False,
    )
    got = _downloaded_file(staging, name)
    if size and got.stat().st_size != size:
        raise PipelineError(
            f"{got}: got {got.stat().st_size:,} bytes but Kaggle lists {size:,} for {name}; "
            "rerun `dvc repro download` to resume, or delete the file to start over"
        )
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
    """Lay the cached competition files out in `out_dir` (safe zip extraction, hard links)."""
    train_dir = out_dir / TRAIN_DIR
    train_dir.mkdir()
    if TRAIN_ZIP in fetched:
        extract_csvs(fetched[TRAIN_ZIP], train_dir)
    else:
        for name, path in fetched.items():
            if name.startswith("train_simplified/"):
                link_or_copy(path, train_dir / PurePosixPath(name).name)
    for path in sorted(train_dir.glob("*.csv")):
        check_header(path, TRAIN_COLUMNS)
    check_header(fetched[TEST_FILE], TEST_COLUMNS)
    link_or_copy(fetched[TEST_FILE], out_dir / TEST_FILE)
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
