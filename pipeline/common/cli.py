"""How every stage and command starts: arguments, logging, params, clean `error:` lines.

A stage module ends with

    def main(argv: list[str] | None = None) -> None:
        stage_main("train", run, argv, __doc__)

which parses `--params`, loads the stage's section into its frozen dataclass and calls
`run(cfg, Paths.under("."))`. A `PipelineError` (a problem the user can fix) ends the process
with one `error: ...` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.common.config import SECTIONS, load_params, load_section, validate_sections
from pipeline.common.errors import PipelineError
from pipeline.common.paths import PARAMS_PATH, Paths


def stage_parser(doc: str | None, params: bool = True) -> argparse.ArgumentParser:
    """An argument parser described by the first line of the module doc (with `--params`)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    if params:
        parser.add_argument("--params", type=Path, default=PARAMS_PATH, help="params YAML file")
    return parser


def stage_main(
    section: str, run: Callable[[Any, Paths], Any], argv: list[str] | None, doc: str | None
) -> None:
    """Parse args, load params section `section` and call `run(cfg, paths)`; see module doc."""
    args = stage_parser(doc).parse_args(argv)
    with user_errors():
        run(load_stage_params(section, args.params), Paths.under("."))


def load_stage_params(section: str, path: Path) -> Any:
    """The stage's section, after checking every section of the file: a bad `predict` value
    stops `dvc exp run` at its first stage, not after ten hours of training. (Each member's
    model keys are checked as the train stages start, before any training.)"""
    validate_sections(load_params(path))
    return load_section(section, SECTIONS[section], path)


# Faults of the machine rather than the code: one line saying which path and what to do.
_ENVIRONMENT = {
    errno.ENOSPC: "free some disk space, then rerun",
    errno.EDQUOT: "free some space within your disk quota, then rerun",
    errno.EFBIG: "the file grew past a size limit (ulimit -f or the file system's); raise it",
    errno.EROFS: "the file system is read-only; run where the outputs can be written",
    errno.EACCES: "make it writable (or run as a user who may write there), then rerun",
    errno.EPERM: "make it writable (or run as a user who may write there), then rerun",
    errno.EIO: "the disk reported an I/O error; check it, then rerun",
}


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Set up logging; a `PipelineError` or a fault of the machine (disk full, read-only) ends
    with one `error:` line and exit 2, Ctrl-C with exit 130."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        yield
    except PipelineError as err:
        fail(str(err))
    except OSError as err:
        if err.errno not in _ENVIRONMENT:
            raise
        where = f" ({err.filename})" if err.filename else ""
        fail(f"{err.strerror or os.strerror(err.errno)}{where}; {_ENVIRONMENT[err.errno]}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def fail(message: str) -> None:
    """End the process with one line, `error: message`, and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
