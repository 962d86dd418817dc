"""A thin, lazy wrapper around the `kaggle` package (2.x) that turns its failures into one line.

`import kaggle` authenticates on import and prints help on failure, so nothing here imports it
until `get_api()` is called. Every call goes through `kaggle_call`, which maps missing
credentials, HTTP 401 / 403 / 404 and network errors to a `PipelineError` that says what to do.
Credential values are never printed, logged or put into an exception message.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import stat
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import requests

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

T = TypeVar("T")

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
            "in configs/params.yaml"
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
