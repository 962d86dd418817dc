"""Limits: a 100,000-point drawing, a one-row class, a class with no valid rows, an empty test
file, class names with spaces, quotes and non-ASCII characters. Each is handled, end to end.

Already proven elsewhere: preprocess refuses a class with no usable rows, naming it and its file
(test_preprocess.py::test_a_failed_run_leaves_the_previous_output_untouched); the local source
refuses an empty class file (test_download.py::test_local_checks_the_layout[empty-train-file]).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline import blend, download, evaluate, predict, preprocess, train
from pipeline.common.config import (
    DownloadConfig,
    EnsembleConfig,
    EvaluateConfig,
    PredictConfig,
    PreprocessConfig,
    from_dict,
)
from pipeline.common.paths import Paths
from pipeline.core.drawings import cap_points
from pipeline.core.features import featurize
from pipeline.core.reasons import Reason
from pipeline.core.store import DrawingStore
from pipeline.ingest.parse import parse_drawings
from pipeline.scoring.submission import validate_submission
from tests.conftest import member_config

HERE = Paths.under(".")  # the repo layout, relative to the cwd (tests chdir into `workdir`)

TRAIN_HEADER = ["countrycode", "drawing", "key_id", "recognized", "timestamp", "word"]
ODD_NAMES = ["paint can", 'it\'s "odd"', "café ☕"]  # spaces, quotes, non-ASCII


def huge_drawing(n_points: int = 100_000, n_strokes: int = 50) -> str:
    rng = np.random.default_rng(0)
    per = n_points // n_strokes
    return json.dumps(
        [
            [rng.integers(0, 256, per).tolist(), rng.integers(0, 256, per).tolist()]
            for _ in range(n_strokes)
        ]
    )


def drawing(i: int, corners: int) -> str:
    angle = np.linspace(0, 2 * np.pi, corners + 1) + i
    xs = (128 + (40 + i % 50) * np.cos(angle)).astype(int).tolist()
    ys = (128 + (40 + i % 50) * np.sin(angle)).astype(int).tolist()
    return json.dumps([[xs, ys]])


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def kaggle_folder(root: Path, classes: dict[str, int], test_rows: int) -> Path:
    """A Kaggle-layout folder: `classes` {word: rows}; class i draws polygons of i + 3 corners."""
    key = 1000
    for c, (word, n) in enumerate(classes.items()):
        rows = []
        for i in range(n):
            key += 1
            rows.append(["US", drawing(i, c + 3), str(key), "True", "2017-01-01 00:00:00", word])
        write_csv(root / "train_simplified" / f"{word}.csv", TRAIN_HEADER, rows)
    test = [[str(9000 + i), "US", drawing(i, i % len(classes) + 3)] for i in range(test_rows)]
    write_csv(root / "test_simplified.csv", ["key_id", "countrycode", "drawing"], test)
    return root


def configs(params: dict, path: Path) -> dict:
    return {
        "download": dataclasses.replace(
            from_dict(DownloadConfig, params["download"]), source="local", path=str(path)
        ),
        "preprocess": dataclasses.replace(
            from_dict(PreprocessConfig, params["preprocess"]), val_per_class=4
        ),
        "train": member_config(params, "gru", epochs=1),
        "ensemble": from_dict(EnsembleConfig, params["ensemble"]),  # one member, a logreg blend
        "evaluate": from_dict(EvaluateConfig, params["evaluate"]),
        "predict": from_dict(PredictConfig, params["predict"]),
    }


# ---------------------------------------------------------------- one huge drawing


def test_a_100k_point_drawing_parses_exactly_and_is_capped() -> None:
    text = huge_drawing()
    parsed = parse_drawings([text, "[[[1], [2]]]"])
    assert parsed.column("reason").tolist() == [Reason.OK, Reason.OK]
    assert parsed.lengths.tolist() == [100_000, 1]
    strokes = json.loads(text)
    np.testing.assert_array_equal(parsed.points[:2000, 0], strokes[0][0])  # exact, not rounded
    capped, n_capped = cap_points(parsed, 256)
    assert n_capped == 1 and capped.lengths.tolist() == [256, 1]
    assert capped.drawing(0)[:, 2].sum() == 50  # every stroke still there
    feats, feat_offsets = featurize(parsed, max_points=128)
    assert np.diff(feat_offsets).tolist() == [128, 1] and np.isfinite(feats).all()


# ---------------------------------------------------------------- the whole chain at the limits


def test_odd_class_names_a_one_row_class_and_a_huge_drawing_run_end_to_end(
    workdir: Path, params: dict, caplog: pytest.LogCaptureFixture
) -> None:
    classes = {name: 30 for name in ODD_NAMES} | {"one row": 1}
    src = kaggle_folder(workdir / "src", classes, test_rows=12)
    with open(src / "train_simplified" / "paint can.csv", "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(
            ["US", huge_drawing(), "777", "True", "2017-01-01 00:00:00", "paint can"]
        )
    cfg = configs(params, src)
    download.run(cfg["download"], HERE)
    with caplog.at_level(logging.WARNING):
        metrics = preprocess.run(cfg["preprocess"], HERE, show_progress=False)
    assert "under 5 x val_per_class" in caplog.text  # the one-row class: said, not hidden
    store = DrawingStore(Path("data/processed/drawings.zarr"))
    assert store.classes == sorted(classes)  # names kept exactly, spaces and all
    counts = store.attrs["counts"]
    assert (counts["train"]["one row"], counts["val"]["one row"]) == (1, 0)
    assert counts["blend"]["one row"] == 0  # so the blend is fitted without that class
    assert metrics["capped_drawings"] == 1
    assert store.split("train").lengths.max() == cfg["preprocess"].max_points

    (member,) = cfg["ensemble"].members
    train.run(cfg["train"], HERE.for_member(member))
    blend.run(cfg["ensemble"], HERE)
    evaluate.run(cfg["evaluate"], HERE)
    with open("reports/per_class.csv", newline="", encoding="utf-8") as f:
        # One row per class with val drawings: the one-row class has none (all went to train).
        assert {row["class"] for row in csv.DictReader(f)} == set(ODD_NAMES)
    predict.run(cfg["predict"], HERE)
    rows = validate_submission(
        Path("submissions/submission.csv"), Path("data/raw/test_simplified.csv"), list(classes)
    )
    assert rows == 12
    with open("submissions/submission.csv", newline="", encoding="utf-8") as f:
        labels = {label for row in csv.DictReader(f) for label in row["word"].split(" ")}
    assert labels <= {"paint_can", 'it\'s_"odd"', "café_☕", "one_row"} and len(labels) >= 3


def test_an_empty_test_file_gives_an_empty_valid_submission(workdir: Path, params: dict) -> None:
    src = kaggle_folder(workdir / "src", {"cat": 20, "dog": 20, "eye": 20}, test_rows=0)
    cfg = configs(params, src)
    download.run(cfg["download"], HERE)
    metrics = preprocess.run(cfg["preprocess"], HERE, show_progress=False)
    assert metrics["test/rows"] == 0
    (member,) = cfg["ensemble"].members
    train.run(cfg["train"], HERE.for_member(member))
    blend.run(cfg["ensemble"], HERE)
    predicted = predict.run(cfg["predict"], HERE)
    assert predicted["test/rows"] == 0
    assert Path("submissions/submission.csv").read_text() == "key_id,word\n"
    test_csv = Path("data/raw/test_simplified.csv")
    classes = ["cat", "dog", "eye"]
    assert validate_submission(Path("submissions/submission.csv"), test_csv, classes) == 0


def test_ndjson_class_with_no_valid_lines_is_dropped_with_a_warning(
    workdir: Path, params: dict, caplog: pytest.LogCaptureFixture
) -> None:
    folder = workdir / "nd"
    folder.mkdir()
    record = {
        "word": "cat",
        "countrycode": "US",
        "timestamp": "t",
        "recognized": True,
        "drawing": [[[0, 1], [2, 3]]],
    }
    lines = [json.dumps(record | {"key_id": str(i)}) for i in range(10)]
    (folder / "cat.ndjson").write_text("\n".join(lines) + "\n")
    (folder / "dog.ndjson").write_text('{"word": "dog", "key_id": "x"}\nnot json\n')
    cfg = dataclasses.replace(
        from_dict(DownloadConfig, params["download"]), source="ndjson", path=str(folder)
    )
    with caplog.at_level(logging.WARNING):
        metrics = download.run(cfg, HERE)
    assert "dog.csv: no usable training drawings; class dropped" in caplog.text
    assert metrics["train/files"] == 1 and metrics["rejected_rows"] == 2
    assert [p.name for p in Path("data/raw/train_simplified").iterdir()] == ["cat.csv"]
