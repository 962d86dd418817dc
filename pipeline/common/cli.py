"""How every stage and command starts: arguments, logging, seeds, progress bars, clean errors.

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
import logging
import os
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline.common.config import SECTIONS, load_section
from pipeline.common.errors import PipelineError
from pipeline.common.paths import PARAMS_PATH, Paths


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with `--params`, described by the first line of the module doc."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_PATH, help="params YAML file")
    return parser


def stage_main(
    section: str, run: Callable[[Any, Paths], Any], argv: list[str] | None, doc: str | None
) -> None:
    """Parse args, load params section `section` and call `run(cfg, paths)`; see module doc."""
    args = stage_parser(doc).parse_args(argv)
    with user_errors():
        run(load_section(section, SECTIONS[section], args.params), Paths.under("."))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Set up logging; turn a `PipelineError` into one line and exit 2, Ctrl-C into exit 130."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        yield
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch, so a stage is reproducible from params."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def n_workers(requested: int) -> int:
    """Worker processes for a `workers` param: 0 means all cores."""
    return requested if requested > 0 else (os.cpu_count() or 1)


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    **kwargs: Any,
) -> tqdm:
    """The one progress bar of the pipeline (tqdm), so every long loop looks the same."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)
