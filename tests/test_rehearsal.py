"""The rehearsal's data generator (benchmarks/rehearsal.py), at a tiny scale: Kaggle's layout,
exact text, unique keys, imbalanced train and balanced test, accepted by the `local` source."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks import rehearsal
from pipeline.core.layout import TEST_COLUMNS, TRAIN_COLUMNS, count_rows, label_token
from pipeline.ingest.parse import parse_drawings
from pipeline.sources.local import copy_local

DRAWINGS, TEST_ROWS = 6_800, 680


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, ndjson345_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rehearsal") / "kaggle"
    figures = rehearsal.generate(str(out), DRAWINGS, TEST_ROWS, seed=0, processes=1)
    return out, figures


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_competition_classes(ndjson345_dir: Path, kaggle16_dir: Path) -> None:
    classes = rehearsal.kaggle_classes()
    assert len(classes) == 340 == len(set(classes))
    assert not set(rehearsal.NOT_IN_KAGGLE) & set(classes)
    kaggle16 = {p.stem for p in (kaggle16_dir / "train_simplified").glob("*.csv")}
    assert kaggle16 <= set(classes)


def test_layout_counts_and_keys(generated: tuple[Path, dict]) -> None:
    out, figures = generated
    files = sorted((out / "train_simplified").glob("*.csv"))
    assert sorted(f.stem for f in files) == rehearsal.kaggle_classes()
    counts = [count_rows(f) for f in files]
    assert sum(counts) == DRAWINGS == figures["train_rows"]
    assert min(counts) < 0.5 * DRAWINGS / 340 < 1.5 * DRAWINGS / 340 < max(counts)  # imbalanced
    keys = []
    for f in files[:20]:
        rows = read_rows(f)
        assert list(rows[0]) == list(TRAIN_COLUMNS)
        assert {r["word"] for r in rows} == {f.stem}
        assert {r["recognized"] for r in rows} <= {"True", "False"}
        assert all(len(r["timestamp"]) == 25 and r["timestamp"][10] == " " for r in rows)
        keys += [r["key_id"] for r in rows]
    test = read_rows(out / "test_simplified.csv")
    solution = read_rows(out / "test_solution.csv")
    assert list(test[0]) == list(TEST_COLUMNS) and len(test) == TEST_ROWS
    assert [r["key_id"] for r in solution] == [r["key_id"] for r in test]
    by_class = Counter(r["word"] for r in solution)
    assert set(by_class.values()) == {TEST_ROWS // 340}  # balanced
    assert set(by_class) == {label_token(c) for c in rehearsal.kaggle_classes()}
    keys += [r["key_id"] for r in test]
    assert len(set(keys)) == len(keys) and all(len(k) == 16 and k.isdigit() for k in keys)
    assert figures["mb_per_s"] > 0


def test_drawings_parse_like_kaggle(generated: tuple[Path, dict]) -> None:
    out, _ = generated
    rows = read_rows(out / "train_simplified" / "cat.csv")
    texts = [r["drawing"] for r in rows]
    for text in texts:
        strokes = json.loads(text)
        assert text == json.dumps(strokes)  # Kaggle's spacing: "[[[1, 2], [3, 4]], ..."
        assert all(len(s) == 2 and len(s[0]) == len(s[1]) >= 1 for s in strokes)
        assert all(0 <= v <= 255 for s in strokes for axis in s for v in axis)
    parsed = parse_drawings(texts)  # the pipeline's own parser takes every row
    assert (parsed.column("reason") == 0).all()


def test_copies_keep_the_source_strokes(
    monkeypatch: pytest.MonkeyPatch, ndjson345_dir: Path
) -> None:
    """With no jitter, scale or shift, a row is its source drawing exactly."""
    monkeypatch.setattr(rehearsal, "JITTER_PX", 0)
    monkeypatch.setattr(rehearsal, "SHIFT_PX", 0.0)
    monkeypatch.setattr(rehearsal, "SCALE_RANGE", (1.0, 1.0))
    classes = rehearsal.kaggle_classes()[:3]
    pool = rehearsal.load_pool(classes)
    src = np.arange(len(pool.n_tokens))
    text = rehearsal.test_text(pool, src, rehearsal.row_keys(0, len(src)), np.random.default_rng(0))
    rows = list(csv.reader(text.decode().splitlines()))
    sources = [d for found in rehearsal._read_sources(classes) for d in found]
    assert len(rows) == len(sources)
    for row, (strokes, country, _) in zip(rows, sources, strict=True):
        assert json.loads(row[2]) == strokes and row[1] == country


def test_the_local_source_takes_it(generated: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = generated
    (tmp_path / "raw").mkdir()
    stats = copy_local(out, tmp_path / "raw")
    assert stats == {"train/files": 340, "train/rows": DRAWINGS, "test/rows": TEST_ROWS}


def test_disk_check_refuses_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(rehearsal.PipelineError, match="GB free, the rehearsal needs about"):
        rehearsal.check_disk(tmp_path, 10**18)
