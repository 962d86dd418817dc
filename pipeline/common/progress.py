"""The one progress bar of the pipeline (tqdm), so every long loop looks the same.

On a terminal it redraws in place; in a log file (DVC, CI, `nohup`) it writes a plain line at most
every `LOG_EVERY_S` seconds, and the final count, so the log stays readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


class _LogLines:
    """tqdm's output for a log file: each refresh as a line of its own, not `\r` overwrites."""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            sys.stderr.write(line + "\n")

    def flush(self) -> None:
        sys.stderr.flush()


LOG_EVERY_S = 30.0  # a progress line at most this often when stderr is not a terminal


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    **kwargs: Any,
) -> tqdm:
    """The one progress bar of the pipeline (tqdm), so every long loop looks the same.

    On a terminal it redraws in place; in a log file (DVC, CI, `nohup`) it writes a plain line
    at most every `LOG_EVERY_S` seconds, and the final count, so the log stays readable.
    """
    if not sys.stderr.isatty():
        kwargs = {
            "mininterval": LOG_EVERY_S,
            **kwargs,
            "file": _LogLines(),
            "ascii": True,
            "leave": True,
        }
    return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)
