"""The `kaggle` 2.x client, as the download stage and `pipeline.submit` use it.

Why a layer at all: the client is right about the protocol (kagglesdk's JSON calls, the 302 to
the file, resumable downloads, the submission upload) but not about a long unattended run. It
authenticates on import and prints help on failure, it raises a raw `requests` error (with the
server's text, which may echo a credential) for any HTTP failure, and it does not retry API
calls that fail with 429 or 5xx. So:

- `get_api()` imports and authenticates `KaggleApi` only when needed, with its prints silenced.
  Credentials are whatever kaggle 2.x finds, in its order: `KAGGLE_API_TOKEN` (a token or a
  token file) or `~/.kaggle/access_token`, then `KAGGLE_USERNAME`/`KAGGLE_KEY` or kaggle.json
  (`KAGGLE_CONFIG_DIR`, `~/.kaggle`, `$XDG_CONFIG_HOME/kaggle`), then the OAuth credentials
  `kaggle auth login` saves in `~/.kaggle/credentials.json`. A kaggle.json readable by others
  gets a warning.
- `kaggle_call()` runs one client method: 429, 5xx and network failures are retried with
  bounded exponential backoff and jitter (`BACKOFF`; a 429's Retry-After is honoured), so a
  transient 503 does not end a ten-hour pipeline in its first stage; calls that may have taken
  effect (a submission) retry only a 429. What is left becomes one `PipelineError` line that
  says what to do (no credentials, bad credentials, rules not accepted, not found, no network).
- Credential values are never printed, logged or put into a message: messages are built from
  the status code alone, and `redact()` scrubs any known secret from text the server sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import requests

from pipeline.common.errors import PipelineError

log = logging.getLogger(__name__)

T = TypeVar("T")

TOKEN_URL = "https://www.kaggle.com/settings/api"
NO_CREDENTIALS = (
    "no Kaggle credentials found; create an API token at " + TOKEN_URL + " and export "
    "KAGGLE_API_TOKEN (or run `kaggle auth login`), or save kaggle.json as "
    "~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY"
)
BAD_CREDENTIALS = (
    "Kaggle rejected your credentials (HTTP 401); create a new API token at " + TOKEN_URL + " and "
    "update KAGGLE_API_TOKEN, ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY"
)
BAD_TOKEN = (
    "Kaggle did not accept KAGGLE_API_TOKEN (invalid or expired); create a new token at "
    + TOKEN_URL
    + " or run `kaggle auth login`"
)
# Env vars whose values are secrets (never shown; scrubbed from any text we pass on).
SECRET_ENV_VARS = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TOKEN_SHAPE = re.compile(r"KGAT_[A-Za-z0-9_-]{8,}")  # how kaggle 2.x API tokens look


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential backoff with jitter: try `attempts` times in all; before try n + 1
    wait a random time in [1/2, 1] x min(cap_s, base_s * 2**(n - 1)), or what Retry-After asks
    (at most cap_s)."""

    attempts: int = 8
    base_s: float = 2.0
    cap_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)


BACKOFF = Backoff()  # 1.5 to 3 minutes of waiting in all before giving up; tests shrink it


class IncompleteDownload(Exception):
    """A download ended short of the listed size (retried: the next try resumes it)."""


def rules_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/rules"


def get_api() -> Any:
    """Import and authenticate `kaggle.api.kaggle_api_extended.KaggleApi`, or explain what to do."""
    config_path = kaggle_json_path()
    if config_path is not None:
        warn_if_loose_permissions(config_path)
    # The package prints auth help (and its own permissions warning) on import and on failure.
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
                raise PipelineError(BAD_TOKEN) from None
            raise PipelineError(NO_CREDENTIALS) from None
        except requests.RequestException as err:
            raise translate(err, competition=None) from None
    return api


def kaggle_call(
    fn: Callable[..., T],
    *args: Any,
    competition: str,
    idempotent: bool = True,
    backoff: Backoff | None = None,
    **kwargs: Any,
) -> T:
    """`fn(*args, competition=competition, **kwargs)`, retried while Kaggle's failure is
    transient (429 always; 5xx, network and an `IncompleteDownload` only if `idempotent`);
    any failure left becomes a PipelineError that says what to do."""
    backoff = backoff or BACKOFF
    for attempt in range(1, backoff.attempts + 1):
        try:
            return fn(*args, competition=competition, **kwargs)
        except SystemExit:  # the package exits when it finds no credentials mid-call
            raise PipelineError(NO_CREDENTIALS) from None
        except (requests.RequestException, IncompleteDownload) as err:
            status = _status(err)
            retry = status == 429 or (idempotent and is_transient(err))
            if not retry or attempt == backoff.attempts:
                raise translate(err, competition, attempts=attempt) from None
            wait = backoff.delay(attempt, _retry_after(err))
            log.warning(
                "Kaggle: %s; retrying in %.1f s (attempt %d of %d)",
                describe(err),
                wait,
                attempt + 1,
                backoff.attempts,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def is_transient(err: BaseException) -> bool:
    """A failure worth another try: 429, 5xx, a dropped or refused connection, a timeout."""
    if isinstance(err, IncompleteDownload):
        return True
    status = _status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    return isinstance(
        err, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    )


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _retry_after(err: BaseException) -> float | None:
    response = getattr(err, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(err: BaseException) -> str:
    """A failure in words from its type and status only (never the server's text)."""
    status = _status(err)
    if status is not None:
        known = status in {s.value for s in HTTPStatus}
        return f"HTTP {status} {HTTPStatus(status).phrase if known else ''}".strip()
    if isinstance(err, IncompleteDownload):
        return "the download ended early"
    return type(err).__name__


def translate(err: BaseException, competition: str | None, attempts: int = 1) -> PipelineError:
    """The one line a user sees for a failed Kaggle call."""
    status = _status(err)
    what = f"'{competition}'" if competition else "the competition"
    tries = f" ({attempts} tries)" if attempts > 1 else ""
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
            "in params.yaml (or --competition)"
        )
    elif status == 429:
        message = (
            f"Kaggle is rate-limiting requests (HTTP 429){tries}; wait a few minutes and rerun"
        )
    elif status is not None:
        message = f"Kaggle API error ({describe(err)}){tries}; try again later"
    elif isinstance(err, IncompleteDownload):
        message = f"{err}{tries}; rerun to resume the download"
    elif isinstance(err, requests.ConnectionError | requests.Timeout):
        message = (
            f"cannot reach kaggle.com{tries}; check your network connection or proxy, then rerun"
        )
    else:
        message = f"Kaggle request failed ({type(err).__name__}){tries}; try again later"
    return PipelineError(redact(message))


def redact(text: str) -> str:
    """Replace any known credential value in `text`, and anything shaped like a Kaggle API
    token (`KGAT_...`, even one this process was not given), with '***'."""
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return TOKEN_SHAPE.sub("***", text)


def _secret_values() -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    home = Path.home() / ".kaggle"
    files = [
        (kaggle_json_path(), ("key",)),
        (home / "credentials.json", ("refresh_token", "access_token")),
    ]
    for path, keys in files:
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                data = json.loads(path.read_text())
                values += [str(data.get(k, "")) for k in keys]
    for name in ("access_token", "access_token.txt"):
        with contextlib.suppress(OSError):
            values.append((home / name).read_text().strip())
    # Short values would redact ordinary words; real keys and tokens are long.
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


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
    """Warn when kaggle.json is readable by group or others; True if it is."""
    if os.name == "nt":
        return False
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
        return True
    return False
