"""The download stage for the offline sources: synthetic, local (Kaggle layout), ndjson.

The kaggle source is tested with the real kaggle client against a local server in
test_kaggle.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pipeline import download
from pipeline.common.config import DownloadConfig, from_dict
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.common.paths import Paths

HERE = Paths.under(".")  # the repo layout, relative to the cwd (tests chdir into `workdir`)

NDJSON_WORDS = ["The Eiffel Tower", "airplane", "cat"]


def config(params: dict, **changes) -> DownloadConfig:
    return dataclasses.replace(from_dict(DownloadConfig, params["download"]), **changes)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics() -> dict:
    return json.loads(Path("metrics/download.json").read_text())


# ---------------------------------------------------------------- synthetic and the stage


def test_main_writes_raw_layout_and_metrics(workdir: Path, params: dict) -> None:
    download.main([])
    raw = workdir / "data" / "raw"
    assert len(list((raw / "train_simplified").glob("*.csv"))) == 5
    assert (raw / "test_simplified.csv").is_file() and (raw / "test_solution.csv").is_file()
    m = metrics()
    assert m["source"] == "synthetic"
    assert (m["train/files"], m["train/rows"], m["test/rows"]) == (5, 5 * 60, 5 * 8)
    # Timings are reported, not judged: drawings_per_s counts every train and test row over the
    # run's time_s (rounded to 10 ms), so together they give back the row count.
    assert m["drawings_per_s"] > 0
    assert (5 * 60 + 5 * 8) / m["drawings_per_s"] == pytest.approx(m["time_s"], abs=0.005 + 1e-6)
    assert not list((workdir / "data").glob(".raw.tmp-*"))  # the atomic temp folder is gone


def test_rerun_replaces_old_raw_files(workdir: Path, params: dict) -> None:
    download.run(config(params, synthetic_classes=6), HERE)
    download.run(config(params, synthetic_classes=3), HERE)
    assert len(list(Path("data/raw/train_simplified").glob("*.csv"))) == 3


def test_failed_run_leaves_previous_raw_dir(workdir: Path, params: dict) -> None:
    download.run(config(params), HERE)
    before = sorted(p.name for p in Path("data/raw/train_simplified").iterdir())
    with pytest.raises(PipelineError):
        download.run(config(params, source="local", path=str(workdir / "missing")), HERE)
    assert sorted(p.name for p in Path("data/raw/train_simplified").iterdir()) == before


# ---------------------------------------------------------------- local


def test_local_links_a_kaggle_layout_folder(workdir: Path, params: dict, kaggle16_dir: Path):
    download.run(config(params, source="local", path=str(kaggle16_dir)), HERE)
    raw = workdir / "data" / "raw"
    for name in ["test_simplified.csv", "test_solution.csv", "train_simplified/paint can.csv"]:
        assert (raw / name).read_bytes() == (kaggle16_dir / name).read_bytes()
        assert not (raw / name).is_symlink()  # DVC caches data/raw: real files only
    m = metrics()
    assert (m["source"], m["train/files"], m["train/rows"], m["test/rows"]) == (
        "local",
        16,
        10_000,
        1_600,
    )


def test_local_wrong_path_is_one_clear_error(
    workdir: Path, params: dict, capsys: pytest.CaptureFixture
) -> None:
    params["download"].update(source="local", path="no/such/folder")
    (workdir / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    with pytest.raises(SystemExit) as exit_info:
        download.main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no/such/folder" in err and "is not a folder" in err


def test_local_and_ndjson_need_a_path(workdir: Path, params: dict) -> None:
    for source in ("local", "ndjson"):
        with pytest.raises(PipelineError, match=re.escape("needs download.path")):
            download.run(config(params, source=source, path=""), HERE)


def make_layout(root: Path, train_header: str, test_header: str, rows: int = 1) -> Path:
    (root / "train_simplified").mkdir(parents=True)
    body = "".join(
        f'US,"[[[0, 1], [0, 1]]]",{i},True,2017-01-01 00:00:00.0,cat\n' for i in range(rows)
    )
    (root / "train_simplified" / "cat.csv").write_text(train_header + "\n" + body)
    (root / "test_simplified.csv").write_text(test_header + "\n")
    return root


TRAIN_HEADER = "countrycode,drawing,key_id,recognized,timestamp,word"


@pytest.mark.parametrize(
    ("train_header", "test_header", "rows", "expected"),
    [
        ("countrycode,drawing,key_id", "key_id,countrycode,drawing", 1, "missing column(s)"),
        (TRAIN_HEADER, "key_id,drawing", 1, "test_simplified.csv: missing column(s) countrycode"),
        (TRAIN_HEADER, "key_id,countrycode,drawing", 0, "has no drawings"),
    ],
    ids=["train-header", "test-header", "empty-train-file"],
)
def test_local_checks_the_layout(
    workdir: Path, params: dict, train_header: str, test_header: str, rows: int, expected: str
) -> None:
    src = make_layout(workdir / "src", train_header, test_header, rows)
    with pytest.raises(PipelineError) as err:
        download.run(config(params, source="local", path=str(src)), HERE)
    assert expected in str(err.value)


def test_local_needs_train_files_and_test_file(workdir: Path, params: dict) -> None:
    src = make_layout(workdir / "src", TRAIN_HEADER, "key_id,countrycode,drawing")
    (src / "test_simplified.csv").unlink()
    with pytest.raises(PipelineError, match=re.escape("test_simplified.csv not found")):
        download.run(config(params, source="local", path=str(src)), HERE)
    shutil.rmtree(src / "train_simplified")
    with pytest.raises(PipelineError, match=re.escape("no <word>.csv files")):
        download.run(config(params, source="local", path=str(src)), HERE)


# ---------------------------------------------------------------- ndjson


@pytest.fixture
def ndjson_dir(tmp_path: Path, ndjson345_dir: Path) -> Path:
    """Three classes of Google's ndjson (one with spaces), plus one line of broken JSON."""
    folder = tmp_path / "ndjson"
    folder.mkdir()
    for word in NDJSON_WORDS:
        shutil.copy(ndjson345_dir / f"{word}.ndjson", folder)
    with open(folder / "cat.ndjson", "a") as f:
        f.write('{"word": "cat", "drawing": [[[1, 2\n')
    return folder


def source_records(folder: Path) -> dict[str, dict]:
    records = {}
    for word in NDJSON_WORDS:
        for line in (folder / f"{word}.ndjson").read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records[record["key_id"]] = record
    return records


def test_ndjson_converts_to_kaggle_layout(workdir: Path, params: dict, ndjson_dir: Path) -> None:
    download.run(config(params, source="ndjson", path=str(ndjson_dir), test_fraction=0.2), HERE)
    raw = workdir / "data" / "raw"
    records = source_records(ndjson_dir)
    train = [r for w in NDJSON_WORDS for r in read_rows(raw / "train_simplified" / f"{w}.csv")]
    test = read_rows(raw / "test_simplified.csv")
    solution = read_rows(raw / "test_solution.csv")
    assert len(train) + len(test) == len(records) == 23 + 16 + 25
    for row in train:
        source = records[row["key_id"]]
        assert row["drawing"] == json.dumps(source["drawing"])  # '[[[x, ...], [y, ...]], ...]'
        assert row["timestamp"] == source["timestamp"].removesuffix(" UTC")
        assert row["recognized"] == str(source["recognized"])  # 'True' / 'False'
        assert row["word"] == source["word"] and row["countrycode"] == source["countrycode"]
    assert [r["key_id"] for r in test] == [r["key_id"] for r in solution]
    assert all(records[r["key_id"]]["word"].replace(" ", "_") == r["word"] for r in solution)
    # Per class: round(fraction * lines) lines are held out; cat's file has 23 good lines and
    # a broken one, which is dropped even when it is one of the held-out lines.
    counts = Counter(r["word"] for r in solution)
    assert (counts["The_Eiffel_Tower"], counts["airplane"], counts["cat"] in (4, 5)) == (5, 3, True)
    m = metrics()
    assert (m["train/files"], m["test/rows"], m["rejected/unparseable"], m["rejected_rows"]) == (
        3,
        len(test),
        1,
        1,
    )


def test_ndjson_test_split_is_seeded(workdir: Path, params: dict, ndjson_dir: Path) -> None:
    def test_keys(seed: int) -> list[str]:
        download.run(config(params, source="ndjson", path=str(ndjson_dir), seed=seed), HERE)
        return [r["key_id"] for r in read_rows(Path("data/raw/test_simplified.csv"))]

    assert test_keys(1) == test_keys(1)
    assert test_keys(1) != test_keys(2)


def test_ndjson_records_without_a_drawing_are_counted(
    workdir: Path, params: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "nd"
    folder.mkdir()
    good = {
        "word": "cat",
        "countrycode": "US",
        "timestamp": "2017-01-01 00:00:00.1 UTC",
        "recognized": False,
        "key_id": "123",
        "drawing": [[[0, 1], [2, 3]]],
    }
    lines = [
        good,
        {**good, "key_id": "abc"},
        {**good, "drawing": "x"},
        [1, 2],
        {**good, "word": "dog"},
    ]
    (folder / "cat.ndjson").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    download.run(config(params, source="ndjson", path=str(folder), test_fraction=0.01), HERE)
    rows = read_rows(Path("data/raw/train_simplified/cat.csv"))
    assert [(r["key_id"], r["recognized"], r["timestamp"]) for r in rows] == [
        ("123", "False", "2017-01-01 00:00:00.1")
    ]
    m = metrics()
    got = {r: m[f"rejected/{r}"] for r in ("bad_key_id", "unparseable", "word_mismatch")}
    assert got == {"bad_key_id": 1, "unparseable": 2, "word_mismatch": 1}  # "x" and [1, 2]
    assert m["rejected_rows"] == 4


def test_ndjson_bad_fraction_and_empty_folder(workdir: Path, params: dict, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=re.escape("no <word>.ndjson files")):
        download.run(config(params, source="ndjson", path=str(tmp_path)), HERE)
    (tmp_path / "cat.ndjson").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"param 'download\.test_fraction' must be < 1, got 1\.0"):
        from_dict(DownloadConfig, params["download"] | {"test_fraction": 1.0}, "download")
