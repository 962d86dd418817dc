"""Hostile files: every input from outside is read correctly, or refused with one clear error
that names the file, or its rows are rejected with a reason. Never a crash, never a silent
wrong value.

Already proven elsewhere (not repeated here): zip members with `../`, absolute paths or symlinks
refused before anything is written, truncated and corrupt zips
(test_kaggle.py::test_unsafe_zip_members_are_refused_before_writing,
::test_truncated_zip_names_the_file, ::test_corrupt_member_data_names_the_file); a train CSV with
a BOM, CRLF ends and quoted newlines, short rows and every bad field
(test_preprocess.py::test_bom_crlf_quoted_newlines_and_column_order_are_read,
::test_every_bad_row_kind_is_rejected_with_its_reason).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import download, train
from pipeline.common.config import DownloadConfig, PreprocessConfig, from_dict
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.reasons import Reason
from pipeline.core.store import DrawingStore
from pipeline.ingest.rows import TEST_READ, TEST_REQUIRED, read_rows
from pipeline.models.checkpoint import load_model
from pipeline.preprocess import run as preprocess_run
from pipeline.scoring.submission import validate_submission
from pipeline.sources import kaggle
from tests.conftest import make_checkpoint, make_polygon_store, member_config

HERE = Paths.under(".")  # the repo layout, relative to the cwd (tests chdir into `workdir`)

GOOD = "[[[0, 10, 20], [5, 15, 25]], [[30], [40]]]"
TRAIN_HEADER = "countrycode,drawing,key_id,recognized,timestamp,word"
PRE_CFG = PreprocessConfig(
    max_per_class=0,
    val_per_class=2,
    blend_per_class=2,
    recognized_only=False,
    max_points=256,
    block_size=16,
    workers=1,
    seed=0,
)
KEPT = ("train", "val", "blend")  # every kept drawing is in one of these


def train_row(key: int, word: str = "cat", drawing: str = GOOD) -> str:
    return f'US,"{drawing}",{key},True,2017-01-01 00:00:00.0,{word}'


def good_lines(word: str, n: int, first_key: int = 100) -> list[str]:
    return [train_row(first_key + i, word) for i in range(n)]


def write_file(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def raw_layout(root: Path, train: dict[str, bytes | str], test: bytes | str) -> Path:
    for word, data in train.items():
        write_file(root / "train_simplified" / f"{word}.csv", data)
    write_file(root / "test_simplified.csv", test)
    return root


def preprocess(raw: Path, out: Path) -> tuple[dict, DrawingStore, list[dict[str, str]]]:
    paths = dataclasses.replace(Paths.under(out), raw_dir=raw)
    metrics = preprocess_run(PRE_CFG, paths, show_progress=False)
    with open(paths.rejects_csv, newline="") as f:
        rejects = list(csv.DictReader(f))
    return metrics, DrawingStore(paths.store_path), rejects


def lines(*rows: str, end: str = "\n") -> str:
    return end.join(rows) + end


TEST_OK = lines("key_id,countrycode,drawing", f'1,US,"{GOOD}"')


# ---------------------------------------------------------------- CSVs into preprocess


def test_truncated_train_csv_rejects_only_the_cut_row(tmp_path: Path) -> None:
    # A download cut mid-row: the last drawing has an open quote and no closing brackets.
    text = lines(TRAIN_HEADER, *good_lines("cat", 10)) + 'US,"[[[0, 10, 20], [5, 1'
    raw = raw_layout(tmp_path / "raw", {"cat": text}, TEST_OK)
    metrics, _, rejects = preprocess(raw, tmp_path)
    assert sum(metrics[f"{s}/drawings"] for s in KEPT) == 10
    assert [(r["file"], r["line"]) for r in rejects] == [("cat.csv", "12")]
    assert rejects[0]["reason"] in ("unparseable", "missing_field")


def test_extra_columns_and_non_utf8_bytes_are_rejected_with_reasons(tmp_path: Path) -> None:
    text = lines(
        TRAIN_HEADER,
        *good_lines("cat", 10),
        train_row(901) + ",surplus",  # an extra field
        f'US,"{GOOD}",902,True,t,c\xe9t',  # the word in Latin-1, not UTF-8
        'US,"[[[0, 1\xff], [5, 15]]]",903,True,t,cat',  # a stray byte inside the drawing
        f'\xff\xfe,"{GOOD}",904,True,t,cat',  # a country code that is not UTF-8
    )
    raw = raw_layout(tmp_path / "raw", {"cat": text.encode("latin-1")}, TEST_OK)
    metrics, store, rejects = preprocess(raw, tmp_path)
    assert {r["key_id"]: r["reason"] for r in rejects} == {
        "901": "unparseable",
        "902": "word_mismatch",  # the word check comes first
        "903": "not_utf8",
        "904": "not_utf8",
    }
    assert sum(metrics[f"{s}/drawings"] for s in KEPT) == 10
    keys = np.concatenate([store.split(s).key_ids for s in KEPT])
    assert not {901, 902, 903, 904} & set(keys.tolist())


def test_test_csv_with_bom_crlf_and_quoted_newline_keeps_every_row(tmp_path: Path) -> None:
    spanning = GOOD.replace(", [[30]", ",\n[[30]")  # a quoted drawing over two lines
    test = "\ufeff" + lines(
        "key_id,countrycode,drawing",
        f'11,US,"{GOOD}"',
        f'12,FR,"{spanning}"',
        '13,DE,"[[[1, 2], [3"',  # cut short
        f'14,US,"{GOOD}",extra',
        end="\r\n",
    )
    raw = raw_layout(tmp_path / "raw", {"cat": lines(TRAIN_HEADER, *good_lines("cat", 10))}, test)
    metrics, store, _ = preprocess(raw, tmp_path)
    split = store.split("test")
    assert split.key_ids.tolist() == [11, 12, 13, 14]  # the BOM did not hide the key_id column
    assert split.valid.tolist() == [True, True, False, False]
    assert split.read().strokes(1) == [([0, 10, 20], [5, 15, 25]), ([30], [40])]
    assert metrics["test/invalid_rows"] == 2


def test_hostile_quoting_rejects_the_row_and_never_crashes(tmp_path: Path) -> None:
    # Found by fuzzing the CSV reader: records that made the csv module raise.
    text = lines(
        TRAIN_HEADER,
        *good_lines("cat", 10),
        f'US,"{GOOD}",\r905,True,t,cat',  # line 12: a lone carriage return in an unquoted field
        train_row(908),
        f'US,5"{GOOD}"x,906,True,t,cat',  # quotes in the middle of a field
        f'US,"{GOOD}"",907,True,t,cat',  # a doubled closing quote: open to the end of the file
    )
    test = lines("key_id,countrycode,drawing", f'1,US,"{GOOD}"', '2,US,"[[[1]]\r]",x', "3,US,5")
    raw = raw_layout(tmp_path / "raw", {"cat": text}, test)
    metrics, store, rejects = preprocess(raw, tmp_path)
    assert {r["reason"] for r in rejects} <= {"unparseable", "missing_field", "bad_key_id"}
    assert {int(r["line"]) for r in rejects if r["file"] == "cat.csv"} >= {12}  # the \r row
    keys = np.concatenate([store.split(s).key_ids for s in KEPT]).tolist()
    assert set(range(100, 110)) | {908} <= set(keys)  # the good rows on either side survive
    assert store.split("test").key_ids.tolist() == [1, 2, 3]  # no test row is ever dropped
    # rejects.csv lists every problem row once: rejected train rows, flagged test rows.
    train_rejects = [r for r in rejects if r["file"] != "test_simplified.csv"]
    assert metrics["rejected_rows"] == len(train_rejects) >= 1
    assert metrics["test/invalid_rows"] == len(rejects) - len(train_rejects)


def read_test_rows(path: Path, block_bytes: int) -> list[tuple[int, int, int]]:
    """(line, key_id, reason) of every test row, through `read_rows` with the given block size."""
    return [
        (int(line), int(key), int(reason))
        for b in read_rows(path, TEST_READ, required=TEST_REQUIRED, block_bytes=block_bytes)
        for line, key, reason in zip(b.column("line"), b.key_ids, b.column("reason"), strict=True)
    ]


QUOTED = f'"{GOOD}"'
SPANNING = GOOD.replace(", [[30]", ",\n[[30]")  # a valid drawing over two lines


@pytest.mark.parametrize("block_bytes", [8, 1 << 20])  # records across blocks, and within one
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A quote inside an unquoted field is a plain character (as in the csv module).
        (f'1,U"S,{QUOTED}\n2,GB,{QUOTED}\n3,FR,{QUOTED}\n', [(2, 1, 0), (3, 2, 0), (4, 3, 0)]),
        # A closing quote gone missing: the next row is not swallowed, and this one is whole.
        (f'1,US,"{GOOD}\n2,GB,{QUOTED}\n3,FR,{QUOTED}\n', [(2, 1, 0), (3, 2, 0), (4, 3, 0)]),
        # The same with a broken drawing: rejected, and still nothing swallowed.
        (f'1,US,"[[[1, 2\n2,GB,{QUOTED}\n', [(2, 1, Reason.UNPARSEABLE), (3, 2, 0)]),
        # A valid drawing quoted over two lines is one row.
        (f'1,US,"{SPANNING}"\n2,GB,{QUOTED}\n', [(2, 1, 0), (4, 2, 0)]),
        # Thousands of blank lines, then rows; no trailing newline.
        ("\n" * 5000 + f"1,US,{QUOTED}\n\r\n2,GB,{QUOTED}", [(5002, 1, 0), (5004, 2, 0)]),
    ],
    ids=["stray-quote", "missing-quote", "missing-quote-bad-row", "quoted-newline", "blanks"],
)
def test_quoting_damage_never_swallows_a_test_row(
    tmp_path: Path, text: str, expected: list, block_bytes: int
) -> None:
    path = write_file(tmp_path / "test_simplified.csv", "key_id,countrycode,drawing\n" + text)
    assert read_test_rows(path, block_bytes) == expected


def test_a_row_longer_than_many_blocks_is_read_whole(tmp_path: Path) -> None:
    strokes = [[[i % 256 for i in range(40)], [(3 * i) % 256 for i in range(40)]]] * 500
    drawing = json.dumps(strokes)  # 500 strokes: ~120 KB, thousands of 8-byte blocks
    path = write_file(
        tmp_path / "t.csv", f'key_id,countrycode,drawing\n1,US,"{drawing}"\n2,GB,{QUOTED}\n'
    )
    assert read_test_rows(path, 8) == [(2, 1, 0), (3, 2, 0)]
    (block,) = read_rows(path, TEST_READ, required=TEST_REQUIRED, block_bytes=8 << 10)
    assert len(block.drawing(0)) == 500 * 40


def test_a_csv_with_old_mac_line_ends_is_one_clear_error(tmp_path: Path) -> None:
    text = lines("key_id,countrycode,drawing", f"1,US,{QUOTED}", end="\r")
    path = write_file(tmp_path / "test_simplified.csv", text)
    with pytest.raises(PipelineError, match=r"test_simplified\.csv") as err:
        read_test_rows(path, 1 << 20)
    assert "\n" not in str(err.value)


def test_a_binary_file_posing_as_csv_is_one_clear_error(tmp_path: Path) -> None:
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    raw = raw_layout(
        tmp_path / "raw",
        {"cat": lines(TRAIN_HEADER, *good_lines("cat", 10)), "dog": garbage},
        TEST_OK,
    )
    with pytest.raises(PipelineError) as err:
        preprocess(raw, tmp_path)
    assert "dog.csv" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- CSVs into the download stage


def download_cfg(params: dict, **changes: object) -> DownloadConfig:
    return dataclasses.replace(from_dict(DownloadConfig, params["download"]), **changes)


def test_local_folder_with_bom_and_crlf_is_accepted(workdir: Path, params: dict) -> None:
    # Files saved by Excel or on Windows: a BOM before the header, CRLF line ends.
    src = raw_layout(
        workdir / "src",
        {"cat": "\ufeff" + lines(TRAIN_HEADER, *good_lines("cat", 3), end="\r\n")},
        "\ufeff" + TEST_OK.replace("\n", "\r\n"),
    )
    metrics = download.run(download_cfg(params, source="local", path=str(src)), HERE)
    assert (metrics["train/rows"], metrics["test/rows"]) == (3, 1)


def test_ndjson_with_bom_crlf_and_bad_bytes_converts_the_good_lines(
    workdir: Path, params: dict
) -> None:
    record = {
        "word": "cat",
        "countrycode": "US",
        "timestamp": "2017-01-01 00:00:00 UTC",
        "recognized": True,
        "drawing": [[[0, 1], [2, 3]]],
    }
    good = [json.dumps(record | {"key_id": str(100 + i)}).encode() for i in range(10)]
    data = b"\xef\xbb\xbf" + b"\r\n".join(
        [*good, b'{"word": "cat", "key_id": "7\xff"}', b"\x00\x01binary", b'{"word": "ca']
    )
    write_file(workdir / "nd" / "cat.ndjson", data)
    cfg = download_cfg(params, source="ndjson", path=str(workdir / "nd"), test_fraction=0.2)
    metrics = download.run(cfg, HERE)
    assert metrics["train/rows"] + metrics["test/rows"] == 10
    assert metrics["rejected_rows"] == 3


# ---------------------------------------------------------------- submissions


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    return write_file(
        tmp_path / "test_simplified.csv",
        lines("key_id,countrycode,drawing", f'7,US,"{GOOD}"', f'8,US,"{GOOD}"'),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"key_id,word\r\n7,cat dog eye\r\n8,eye dog cat\r\n",
        b"\xef\xbb\xbfkey_id,word\n7,cat dog eye\n8,eye dog cat\n",
    ],
    ids=["crlf", "bom"],
)
def test_submission_saved_by_excel_or_windows_is_valid(
    tmp_path: Path, test_csv: Path, data: bytes
) -> None:
    path = write_file(tmp_path / "sub.csv", data)
    assert validate_submission(path, test_csv, ["cat", "dog", "eye"]) == 2


def test_submission_with_non_utf8_bytes_names_the_line(tmp_path: Path, test_csv: Path) -> None:
    path = write_file(tmp_path / "sub.csv", b"key_id,word\n7,cat dog eye\n8,eye dog c\xe4t\n")
    with pytest.raises(PipelineError, match=r"sub\.csv line 3 \(key_id 8\): unknown label"):
        validate_submission(path, test_csv, ["cat", "dog", "eye"])


# ---------------------------------------------------------------- zips from Kaggle


def test_zip_unwrapped_from_a_single_file_download_is_checked_too(tmp_path: Path) -> None:
    # Kaggle may serve test_simplified.csv as test_simplified.csv.zip: the same member checks.
    staging = tmp_path / "staging"
    staging.mkdir()
    info = zipfile.ZipInfo("evil")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(staging / "test_simplified.csv.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PipelineError, match="is a symlink; refusing"):
        kaggle._downloaded_file(staging, "test_simplified.csv")
    assert sorted(p.name for p in staging.iterdir()) == ["test_simplified.csv.zip"]


def test_zip_bomb_like_duplicate_names_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:  # two members that would land on one file
        zf.writestr("a/cat.csv", TRAIN_HEADER + "\n")
        zf.writestr("b/cat.csv", "overwritten\n")
    path = write_file(tmp_path / "train_simplified.zip", buffer.getvalue())
    (tmp_path / "out").mkdir()
    with pytest.raises(PipelineError, match="share a file name"):
        kaggle.extract_csvs(path, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(path: Path) -> Path:
    return make_checkpoint(path, classes=["a", "b", "c"])


class RunsCode:
    """Unpickling this runs a command: what a booby-trapped checkpoint from the internet does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "zeros",
        "not-a-dict",
        "no-meta",
    ],
)
def test_damaged_model_is_one_clear_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = write_checkpoint(tmp_path / "model.pt")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "zeros":
        path.write_bytes(bytes(len(data)))
    elif damage == "not-a-dict":
        torch.save(torch.zeros(3), path)
    else:
        torch.save({"model": {}}, path)
    with pytest.raises(PipelineError) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_with_code_in_it_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = write_checkpoint(tmp_path / "model.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["extra"] = RunsCode(marker)
    torch.save(ckpt, path)
    with pytest.raises(PipelineError, match=r"model\.pt"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "empty",
        "zeros",
        "pickled",
        "no-about",
        "unknown-method",
    ],
)
def test_damaged_blend_is_one_clear_error_naming_it(tmp_path: Path, damage: str) -> None:
    from pipeline.scoring.stacking import Blend, fit_blend

    path = tmp_path / "blend.npz"
    fit_blend([np.zeros((0, 3))] * 2, np.zeros(0), ["gru", "cnn"], "mean").save(path)
    data = path.read_bytes()
    arrays = {"coef": np.full(2, 0.5), "intercept": np.zeros(3)}
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "zeros":
        path.write_bytes(bytes(len(data)))
    elif damage == "pickled":  # an object array: loading it would unpickle
        np.savez(path, **arrays, about=np.array([{"members": ["gru"]}], dtype=object))
    elif damage == "no-about":
        np.savez(path, **arrays)
    else:
        about = json.dumps({"members": ["gru", "cnn"], "method": "median"})
        np.savez(path, **arrays, about=np.array(about))
    with pytest.raises(PipelineError) as err:
        Blend.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "code"])
def test_damaged_last_checkpoint_restarts_training_with_a_warning(
    tmp_path: Path, params: dict, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    paths = Paths.under(tmp_path).for_member("gru")  # checkpoints/gru/last.pt
    make_polygon_store(paths.store_path)
    cfg = member_config(params, epochs=1)
    marker = tmp_path / "code-ran"
    train.run(cfg, paths, stop_after_steps=2, log_live=False)
    last = paths.checkpoint_dir / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    else:
        ckpt = torch.load(last, weights_only=True)
        ckpt["state"]["trap"] = RunsCode(marker)
        torch.save(ckpt, last)
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        train.run(cfg, paths, log_live=False)
    assert f"cannot read {last}" in caplog.text and "starting fresh" in caplog.text
    assert "resuming" not in caplog.text
    assert not marker.exists()
    state = torch.load(last, weights_only=True)["state"]
    assert state["step"] == state["total_steps"] > 2  # finished, with a valid last.pt again
