"""The kaggle source and the API wrapper, tested at the API boundary with a fake `KaggleApi`.

No network here: the fake lists and "downloads" in-memory files; HTTP failures are the
`requests.HTTPError`s that kaggle 2.x raises.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from unittest import mock

import pytest
import requests

from pipeline import download
from pipeline.common.config import DownloadConfig, from_dict
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.sources import kaggle as kaggle_api

COMPETITION = "quickdraw-doodle-recognition"
SECRET = "0123456789abcdef0123456789abcdef"
TRAIN_CSV = (
    b'countrycode,drawing,key_id,recognized,timestamp,word\nUS,"[[[0, 9], [0, 9]]]",1,True,t,cat\n'
)
TEST_CSV = b'key_id,countrycode,drawing\n7,US,"[[[0, 9], [0, 9]]]"\n'


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def competition_files(train_zip: bytes | None = None) -> dict[str, bytes]:
    """What Kaggle lists for the competition, raw files included (which must never be fetched)."""
    return {
        "train_simplified.zip": train_zip
        or make_zip({"cat.csv": TRAIN_CSV, "paint can.csv": TRAIN_CSV}),
        "test_simplified.csv": TEST_CSV,
        "sample_submission.csv": b"key_id,word\n7,cat dog eye\n",
        "train_raw.zip": b"65 GB",
        "test_raw.csv": b"raw",
    }


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    # Even if a server echoed a credential back, it must not reach the user's terminal.
    return requests.HTTPError(f"{status} Client Error for key {SECRET}", response=response)


class FakeKaggle:
    """Stands in for kaggle.api.kaggle_api_extended.KaggleApi (the methods the pipeline uses)."""

    def __init__(self, files: dict[str, bytes], error: Exception | None = None, page: int = 2):
        self.files, self.error, self.page = files, error, page
        self.downloads: list[str] = []
        self.saved_as: dict[str, str] = {}  # Kaggle file name -> local name the client writes

    def competition_list_files(self, competition, page_token=None, page_size=20):
        if self.error:
            raise self.error
        names = list(self.files)
        start = int(page_token or 0)
        chunk = names[start : start + self.page]
        more = start + self.page < len(names)
        return SimpleNamespace(
            files=[SimpleNamespace(name=n, total_bytes=len(self.files[n])) for n in chunk],
            next_page_token=str(start + self.page) if more else "",
        )

    def competition_download_file(
        self, competition, file_name, path=None, force=False, quiet=False
    ):
        assert competition == COMPETITION
        self.downloads.append(file_name)
        local = self.saved_as.get(file_name, PurePosixPath(file_name).name)
        Path(path, local).write_bytes(self.files[file_name])


@pytest.fixture
def cfg(params: dict) -> DownloadConfig:
    return dataclasses.replace(from_dict(DownloadConfig, params["download"]), source="kaggle")


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)


# ---------------------------------------------------------------- downloading


def download_with(api: object, cfg: object) -> dict:
    """The download stage with `api` in place of the real client (cwd: the repo layout)."""
    with mock.patch.object(kaggle_api, "get_api", return_value=api):
        return download.run(cfg, Paths.under("."))


def test_fetches_only_the_simplified_files_and_lays_them_out(workdir: Path, cfg) -> None:
    api = FakeKaggle(competition_files())
    metrics = download_with(api, cfg)
    assert sorted(api.downloads) == [
        "sample_submission.csv",
        "test_simplified.csv",
        "train_simplified.zip",
    ]  # never the raw files
    raw = workdir / "data" / "raw"
    assert sorted(p.name for p in (raw / "train_simplified").iterdir()) == [
        "cat.csv",
        "paint can.csv",
    ]
    assert (raw / "test_simplified.csv").read_bytes() == TEST_CSV
    assert (metrics["train/files"], metrics["train/rows"], metrics["test/rows"]) == (2, 2, 1)
    assert (workdir / "data" / "cache" / COMPETITION / "train_simplified.zip").is_file()


def test_rerun_skips_complete_files_and_refetches_partial_ones(workdir: Path, cfg) -> None:
    download_with(FakeKaggle(competition_files()), cfg)
    cached_test = workdir / "data" / "cache" / COMPETITION / "test_simplified.csv"
    cached_test.write_bytes(TEST_CSV[:10])  # a cut-off copy: its size differs from the listing
    api = FakeKaggle(competition_files())
    download_with(api, cfg)
    assert api.downloads == ["test_simplified.csv"]
    assert cached_test.read_bytes() == TEST_CSV


def test_single_file_zipped_by_kaggle_is_unwrapped(workdir: Path, cfg) -> None:
    files = competition_files()
    api = FakeKaggle(files)
    # Kaggle sometimes serves a big single file as '<name>.zip'.
    api.files = {**files, "test_simplified.csv": make_zip({"test_simplified.csv": TEST_CSV})}
    api.saved_as["test_simplified.csv"] = "test_simplified.csv.zip"
    listing_sizes = FakeKaggle(files)  # the listing gives the unzipped size
    api.competition_list_files = listing_sizes.competition_list_files
    download_with(api, cfg)
    assert (workdir / "data" / "raw" / "test_simplified.csv").read_bytes() == TEST_CSV


def test_train_csvs_listed_one_by_one(workdir: Path, cfg) -> None:
    files = competition_files()
    del files["train_simplified.zip"]
    files |= {"train_simplified/cat.csv": TRAIN_CSV, "train_simplified/paint can.csv": TRAIN_CSV}
    api = FakeKaggle(files)
    api.saved_as["train_simplified/paint can.csv"] = "paint%20can.csv"  # named after the URL
    download_with(api, cfg)
    names = sorted(p.name for p in (workdir / "data" / "raw" / "train_simplified").iterdir())
    assert names == ["cat.csv", "paint can.csv"]


@pytest.mark.parametrize(
    ("member", "symlink", "expected"),
    [
        ("../evil.csv", False, "escapes the folder"),
        ("train_simplified/../../evil.csv", False, "escapes the folder"),
        ("/tmp/evil.csv", False, "absolute path"),
        ("C:\\evil.csv", False, "absolute path"),
        ("link.csv", True, "is a symlink"),
    ],
)
def test_unsafe_zip_members_are_refused_before_writing(
    workdir: Path, cfg, member: str, symlink: bool, expected: str
) -> None:
    info = zipfile.ZipInfo(member)
    if symlink:
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cat.csv", TRAIN_CSV)  # a good member first: it must not be written either
        zf.writestr(info, "/etc/passwd" if symlink else "x")
    with pytest.raises(PipelineError, match=expected) as err:
        download_with(FakeKaggle(competition_files(buffer.getvalue())), cfg)
    assert "train_simplified.zip" in str(err.value)
    assert not (workdir / "data" / "raw").exists()
    assert not list(workdir.rglob("evil.csv")) and not list(workdir.rglob("cat.csv"))


def test_truncated_zip_names_the_file(workdir: Path, cfg) -> None:
    whole = competition_files()["train_simplified.zip"]
    with pytest.raises(PipelineError, match="truncated or corrupt") as err:
        download_with(FakeKaggle(competition_files(whole[: len(whole) // 2])), cfg)
    assert f"data/cache/{COMPETITION}/train_simplified.zip is" in str(err.value)
    assert not (workdir / "data" / "raw").exists()


def test_corrupt_member_data_names_the_file(workdir: Path, cfg) -> None:
    data = bytearray(make_zip({"cat.csv": TRAIN_CSV}, zipfile.ZIP_STORED))
    data[data.index(b"countrycode")] ^= 0xFF  # flip a byte of the stored CSV: CRC mismatch
    with pytest.raises(PipelineError, match=r"train_simplified\.zip is truncated or corrupt"):
        download_with(FakeKaggle(competition_files(bytes(data))), cfg)


# ---------------------------------------------------------------- errors and credentials


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "rejected your credentials"),
        (403, f"accept the rules at https://www.kaggle.com/competitions/{COMPETITION}/rules"),
        (404, "check `download.competition`"),
        (500, "HTTP 500"),
    ],
)
def test_http_errors_end_with_one_line_saying_what_to_do(
    workdir: Path,
    cfg,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    status: int,
    expected: str,
) -> None:
    api = FakeKaggle(competition_files(), error=http_error(status))
    monkeypatch.setattr(kaggle_api, "get_api", lambda: api)
    (workdir / "configs" / "params.yaml").write_text(
        json.dumps({"download": dataclasses.asdict(cfg)})
    )
    with pytest.raises(SystemExit) as exit_info:
        download.main([])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert SECRET not in out + err


def test_network_failure_is_explained(workdir: Path, cfg) -> None:
    api = FakeKaggle(competition_files(), error=requests.ConnectionError("no route"))
    with pytest.raises(PipelineError, match=r"cannot reach kaggle\.com"):
        download_with(api, cfg)


def test_redact_hides_credential_values() -> None:
    assert kaggle_api.redact(f"url?key={SECRET}&x=1") == "url?key=***&x=1"


def test_loose_kaggle_json_permissions_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kaggle.json"
    path.write_text(json.dumps({"username": "someone", "key": SECRET}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    assert kaggle_api.kaggle_json_path() == path
    path.chmod(0o600)
    assert not kaggle_api.warn_if_loose_permissions(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert kaggle_api.warn_if_loose_permissions(path)
    assert "chmod 600" in caplog.text and SECRET not in caplog.text


def test_missing_credentials_with_the_real_package(tmp_path: Path, params: dict) -> None:
    """The real kaggle package, no credentials anywhere: one line, no auth-help dump, exit 2."""
    (tmp_path / "configs").mkdir()
    params["download"]["source"] = "kaggle"
    (tmp_path / "configs" / "params.yaml").write_text(json.dumps(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.download"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {kaggle_api.NO_CREDENTIALS}"]
    assert "Authentication required" not in result.stdout
    assert not (tmp_path / "data" / "raw").exists()
