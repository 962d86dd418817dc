"""Source `local`: a folder already in Kaggle's layout (`download.path`), checked, then copied."""

from __future__ import annotations

from pathlib import Path

from pipeline.common.errors import PipelineError
from pipeline.common.progress import progress
from pipeline.core.layout import (
    DESCRIPTION,
    SOLUTION_COLUMNS,
    SOLUTION_FILE,
    TEST_COLUMNS,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    check_header,
    copy_file,
    count_rows,
    empty_file_problem,
    layout_stats,
)


def copy_local(src_dir: Path, out_dir: Path) -> dict[str, int]:
    """Check a Kaggle-layout folder, then copy it into `out_dir` (the folder is never touched)."""
    if not src_dir.is_dir():
        raise PipelineError(
            f"download.path {str(src_dir)!r} is not a folder; point it at a folder with "
            f"{DESCRIPTION}"
        )
    train_files = sorted((src_dir / TRAIN_DIR).glob("*.csv"))
    if not train_files:
        raise PipelineError(f"{src_dir / TRAIN_DIR} has no <word>.csv files; need {DESCRIPTION}")
    test_csv = src_dir / TEST_FILE
    if not test_csv.is_file():
        raise PipelineError(f"{test_csv} not found; need {DESCRIPTION}")
    for path in train_files:
        check_header(path, TRAIN_COLUMNS)
        if count_rows(path) == 0:
            raise PipelineError(f"{path} {empty_file_problem(path)}")
    check_header(test_csv, TEST_COLUMNS)
    (out_dir / TRAIN_DIR).mkdir()
    for path in progress(train_files, desc="copy train files", unit="file"):
        copy_file(path, out_dir / TRAIN_DIR / path.name)
    copy_file(test_csv, out_dir / TEST_FILE)
    solution = src_dir / SOLUTION_FILE
    if solution.is_file():
        check_header(solution, SOLUTION_COLUMNS)
        copy_file(solution, out_dir / SOLUTION_FILE)
    return layout_stats(out_dir)
