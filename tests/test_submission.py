"""The submission format, its validation, and the `pipeline.submit` CLI before any upload (the
upload itself, with the real kaggle client against a local server, is in test_kaggle.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import submit
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.layout import label_token
from pipeline.scoring.submission import validate_submission, write_submission

CLASSES = ["cat", "dog", "eye", "paint can", "The Eiffel Tower"]
KEY_IDS = [5562611447889920, 5002866102108160, 6284544044957696]


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    path = tmp_path / "test_simplified.csv"
    rows = [f'{k},US,"[[[0, 1], [0, 1]]]"' for k in KEY_IDS]
    path.write_text("key_id,countrycode,drawing\n" + "\n".join(rows) + "\n")
    return path


def write_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "submission.csv"
    path.write_text(text)
    return path


GOOD_ROWS = [
    f"{KEY_IDS[0]},cat dog eye",
    f"{KEY_IDS[1]},paint_can The_Eiffel_Tower cat",
    f"{KEY_IDS[2]},eye cat dog",
]


def good_text(rows: list[str] = GOOD_ROWS) -> str:
    return "key_id,word\n" + "\n".join(rows) + "\n"


def test_label_token_replaces_spaces_only() -> None:
    assert label_token("The Eiffel Tower") == "The_Eiffel_Tower"
    assert label_token("cat") == "cat"


def test_write_submission_matches_kaggle_sample_format(tmp_path: Path, test_csv: Path) -> None:
    path = tmp_path / "out" / "submission.csv"
    top3 = [["cat", "dog", "eye"], ["paint can", "The Eiffel Tower", "cat"], ["eye", "cat", "dog"]]
    assert write_submission(path, KEY_IDS, top3) == 3
    assert path.read_text() == good_text()
    assert validate_submission(path, test_csv, CLASSES) == 3
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp file left


@pytest.mark.parametrize(
    ("key_ids", "top3"),
    [
        (KEY_IDS[:2], [["cat", "dog", "eye"]]),  # lengths differ
        (KEY_IDS[:1], [["cat", "dog"]]),  # two labels
        (KEY_IDS[:1], [["cat", "cat", "dog"]]),  # repeated label
    ],
)
def test_write_submission_refuses_bad_predictions(tmp_path: Path, key_ids, top3) -> None:
    path = tmp_path / "submission.csv"
    with pytest.raises(ValueError):
        write_submission(path, key_ids, top3)
    assert not path.exists()  # a broken predictor leaves no plausible-looking file


def test_validate_accepts_any_row_order(tmp_path: Path, test_csv: Path) -> None:
    path = write_text(tmp_path, good_text(GOOD_ROWS[::-1]))
    assert validate_submission(path, test_csv, CLASSES) == 3


def test_three_classes_that_spell_a_fourth_are_still_three_labels(
    tmp_path: Path, test_csv: Path
) -> None:
    # All five are competition classes: 'baseball bat cat' is baseball, bat, cat, which is valid,
    # while 'baseball bat dog eye' (four labels) is most likely 'baseball_bat' written with a space.
    classes = ["baseball", "bat", "baseball bat", "bathtub", "cat", "dog", "eye"]
    rows = [
        f"{KEY_IDS[0]},baseball bat cat",
        f"{KEY_IDS[1]},baseball_bat bat cat",
        f"{KEY_IDS[2]},bathtub bat baseball",
    ]
    assert validate_submission(write_text(tmp_path, good_text(rows)), test_csv, classes) == 3
    rows[0] = f"{KEY_IDS[0]},baseball bat dog eye"
    with pytest.raises(PipelineError, match=r"line 2 .*write 'baseball bat' as 'baseball_bat'"):
        validate_submission(write_text(tmp_path, good_text(rows)), test_csv, classes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,word\n" + "\n".join(GOOD_ROWS) + "\n", "header must be 'key_id,word'"),
        ("", "empty file"),
        (good_text(GOOD_ROWS[:2]), f"missing, e.g. {KEY_IDS[2]}"),
        (
            good_text([*GOOD_ROWS, "123,cat dog eye"]),
            "line 5 (key_id 123): not a key_id of the test",
        ),
        (good_text([*GOOD_ROWS, GOOD_ROWS[0]]), f"line 5 (key_id {KEY_IDS[0]}): duplicate key_id"),
        (good_text([f"{KEY_IDS[0]},cat dog", *GOOD_ROWS[1:]]), "need exactly 3 labels, got 2"),
        (good_text([f"{KEY_IDS[0]},cat dog eye paint_can", *GOOD_ROWS[1:]]), "got 4"),
        (good_text([f"{KEY_IDS[0]},cat cat eye", *GOOD_ROWS[1:]]), "repeated label"),
        (good_text([f"{KEY_IDS[0]},cat dog horse", *GOOD_ROWS[1:]]), "unknown label 'horse'"),
        (good_text([f"{KEY_IDS[0]},paint can cat", *GOOD_ROWS[1:]]), "as 'paint_can'"),
        (good_text([f"{KEY_IDS[0]},cat  dog eye", *GOOD_ROWS[1:]]), "single spaces"),
        (good_text([f"{KEY_IDS[0]},cat dog eye,x", *GOOD_ROWS[1:]]), "Expected 2 fields in line 2"),
    ],
    ids=[
        "header",
        "empty",
        "missing",
        "extra",
        "duplicate",
        "two-labels",
        "four-labels",
        "repeated",
        "unknown",
        "space-in-class",
        "double-space",
        "three-columns",
    ],
)
def test_validate_refuses_with_one_clear_line(
    tmp_path: Path, test_csv: Path, text: str, expected: str
) -> None:
    path = write_text(tmp_path, text)
    with pytest.raises(PipelineError) as err:
        validate_submission(path, test_csv, CLASSES)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_validate_names_missing_files(tmp_path: Path, test_csv: Path) -> None:
    with pytest.raises(PipelineError, match="dvc repro predict"):
        validate_submission(tmp_path / "nope.csv", test_csv, CLASSES)
    path = write_text(tmp_path, good_text())
    with pytest.raises(PipelineError, match="dvc repro download"):
        validate_submission(path, tmp_path / "nope.csv", CLASSES)


# ---------------------------------------------------------------- the submit CLI


@pytest.fixture
def repo(workdir: Path) -> Path:
    """A repo folder with data/raw (classes + test file) and a valid submission."""
    train_dir = workdir / "data" / "raw" / "train_simplified"
    train_dir.mkdir(parents=True)
    for word in CLASSES:
        (train_dir / f"{word}.csv").write_text(
            "countrycode,drawing,key_id,recognized,timestamp,word\n"
        )
    rows = [f'{k},US,"[[[0, 1], [0, 1]]]"' for k in KEY_IDS]
    (workdir / "data" / "raw" / "test_simplified.csv").write_text(
        "key_id,countrycode,drawing\n" + "\n".join(rows) + "\n"
    )
    (workdir / "submissions").mkdir()
    (workdir / "submissions" / "submission.csv").write_text(good_text())
    return workdir


def test_dry_run_validates_and_exits_zero(repo: Path, capsys: pytest.CaptureFixture) -> None:
    submit.main(["--dry-run"])  # returns normally: exit code 0
    assert "3 rows, valid" in capsys.readouterr().out


def test_dry_run_of_a_bad_file_exits_2_with_one_line(
    repo: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = repo / "bad.csv"
    bad.write_text(good_text(GOOD_ROWS[:2]))
    with pytest.raises(SystemExit) as exit_info:
        submit.main(["--dry-run", "--file", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_submit_requires_a_message(repo: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        submit.main([])
    assert exit_info.value.code == 2


def test_classes_fall_back_to_nothing_with_a_clear_error(workdir: Path) -> None:
    with pytest.raises(PipelineError, match="dvc repro download"):
        submit.read_classes(Paths.under("."))
