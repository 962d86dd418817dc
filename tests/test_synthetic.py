"""The synthetic doodles: Kaggle's layout and formats, determinism, a balanced test set."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.common.errors import PipelineError
from pipeline.sources.synthetic import CLASSES, rdp_mask, write_synthetic

N_CLASSES, TRAIN, TEST = 12, 40, 6


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw")
    write_synthetic(path, N_CLASSES, TRAIN, TEST, seed=3)
    return path


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def test_same_seed_gives_identical_files(raw_dir: Path, tmp_path: Path) -> None:
    write_synthetic(tmp_path / "again", N_CLASSES, TRAIN, TEST, seed=3)
    assert all_bytes(tmp_path / "again") == all_bytes(raw_dir)
    write_synthetic(tmp_path / "other", N_CLASSES, TRAIN, TEST, seed=4)
    assert all_bytes(tmp_path / "other") != all_bytes(raw_dir)


def test_kaggle_layout_and_columns(raw_dir: Path) -> None:
    words = list(CLASSES)[:N_CLASSES]
    assert sorted(p.stem for p in (raw_dir / "train_simplified").glob("*.csv")) == sorted(words)
    assert any(" " in w for w in words)  # exercises the space -> '_' rule downstream
    train = read_rows(raw_dir / "train_simplified" / "zig zag.csv")
    assert list(train[0]) == ["countrycode", "drawing", "key_id", "recognized", "timestamp", "word"]
    assert len(train) == TRAIN and {r["word"] for r in train} == {"zig zag"}
    test = read_rows(raw_dir / "test_simplified.csv")
    assert list(test[0]) == ["key_id", "countrycode", "drawing"]
    assert list(read_rows(raw_dir / "test_solution.csv")[0]) == ["key_id", "word"]


def test_metadata_looks_like_kaggle(raw_dir: Path) -> None:
    rows = [r for p in (raw_dir / "train_simplified").glob("*.csv") for r in read_rows(p)]
    test = read_rows(raw_dir / "test_simplified.csv")
    key_ids = [r["key_id"] for r in rows + test]
    assert all(re.fullmatch(r"[1-9]\d{15}", k) for k in key_ids)
    assert len(set(key_ids)) == len(key_ids)
    assert all(
        re.fullmatch(r"2017-0[1-3]-\d\d \d\d:\d\d:\d\d\.\d{5}", r["timestamp"]) for r in rows
    )
    assert all(re.fullmatch(r"[A-Z]{2}", r["countrycode"]) for r in rows + test)
    recognized = Counter(r["recognized"] for r in rows)
    assert set(recognized) == {"True", "False"} and recognized["True"] > 0.8 * len(rows)


def test_drawings_are_simplified_kaggle_drawings(raw_dir: Path) -> None:
    rows = read_rows(raw_dir / "train_simplified" / "smiley face.csv")
    for row in rows:
        strokes = json.loads(row["drawing"])
        assert row["drawing"] == json.dumps(strokes)  # '[[[x, ...], [y, ...]], ...]' spacing
        xs = [x for s in strokes for x in s[0]]
        ys = [y for s in strokes for y in s[1]]
        assert all(len(s) == 2 and len(s[0]) == len(s[1]) >= 1 for s in strokes)
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in xs + ys)
        # Aligned to the top-left, longer side scaled to 255, then RDP (which may drop an
        # extreme point by up to epsilon 2), like Kaggle's simplification.
        assert min(xs) <= 2 and min(ys) <= 2 and max(max(xs), max(ys)) >= 253
    assert len({r["drawing"] for r in rows}) == len(rows)  # every drawing differs


def test_test_set_is_balanced_shuffled_and_labelled(raw_dir: Path) -> None:
    test = read_rows(raw_dir / "test_simplified.csv")
    solution = read_rows(raw_dir / "test_solution.csv")
    assert [r["key_id"] for r in test] == [r["key_id"] for r in solution]
    counts = Counter(r["word"] for r in solution)
    assert counts == {w.replace(" ", "_"): TEST for w in list(CLASSES)[:N_CLASSES]}
    first_words = [r["word"] for r in solution[:TEST]]
    assert len(set(first_words)) > 1  # shuffled across classes, not grouped


def test_adding_classes_keeps_existing_drawings(raw_dir: Path, tmp_path: Path) -> None:
    write_synthetic(tmp_path, N_CLASSES + 1, TRAIN, TEST, seed=3)
    old = [r["drawing"] for r in read_rows(raw_dir / "train_simplified" / "circle.csv")]
    new = [r["drawing"] for r in read_rows(tmp_path / "train_simplified" / "circle.csv")]
    assert old == new


@pytest.mark.parametrize(
    ("n_classes", "train", "test"), [(1, 5, 5), (len(CLASSES) + 1, 5, 5), (3, 0, 5), (3, 5, 0)]
)
def test_bad_sizes_are_refused(tmp_path: Path, n_classes: int, train: int, test: int) -> None:
    with pytest.raises(PipelineError, match=r"download\.synthetic_"):
        write_synthetic(tmp_path, n_classes, train, test, seed=0)


def test_rdp_keeps_corners_and_drops_collinear_points() -> None:
    line = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])  # straight: endpoints only
    corner = np.array([[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]])  # L shape: corner kept
    dot = np.array([[7, 7], [7, 7], [7, 7]])  # one repeated point: a single point
    points = np.concatenate([line, corner, dot])
    stroke_id = np.repeat([0, 1, 2], [4, 5, 3])
    keep = rdp_mask(points, stroke_id, epsilon=2.0)
    assert keep.tolist() == [
        True,
        False,
        False,
        True,
        True,
        False,
        True,
        False,
        True,
        True,
        False,
        False,
    ]
