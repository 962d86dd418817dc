"""Kaggle credentials never leak: not in logs, output, metrics, exceptions, data or DVC files.

The download and submit paths run with fake credentials against a fake `kaggle` package (put
first on PYTHONPATH, so the pipeline's own `get_api()` imports and authenticates it), once in
process with hostile failures and once for real through `dvc repro download` and the submit CLI.
Every byte they write or print is then searched for the credentials.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from pipeline import download, submit
from pipeline.common.errors import PipelineError
from pipeline.sources import kaggle as kaggle_api
from tests.conftest import REPO_DIR, write_params

USERNAME = "fake-user-7f3a9c"
FILE_KEY = "f11e5ec7e7f11e5ec7e7f11e5ec7e7aa"  # the key in kaggle.json
ENV_KEY = "e4e4e4e4deadbeefdeadbeefe4e4e4e4"  # KAGGLE_KEY
TOKEN = "KGAT_70c3e570c3e570c3e570c3e570c3e5"  # KAGGLE_API_TOKEN (kaggle 2.x style)
SECRETS = (USERNAME, FILE_KEY, ENV_KEY, TOKEN)
COMPETITION = "quickdraw-doodle-recognition"
CLASSES = ["cat", "dog", "paint can"]
TRAIN_HEADER = "countrycode,drawing,key_id,recognized,timestamp,word"


def train_csv(word: str) -> bytes:
    rows = [f'US,"[[[0, {i + 1}], [0, 9]]]",{100 + i},True,2017-01-01 00:00:00.0,{word}'
            for i in range(4)]  # fmt: skip
    return (TRAIN_HEADER + "\n" + "\n".join(rows) + "\n").encode()


TEST_CSV = b'key_id,countrycode,drawing\n7,US,"[[[0, 9], [0, 9]]]"\n8,FR,"[[[1, 2], [3, 4]]]"\n'
SUBMISSION = "key_id,word\n7,cat dog paint_can\n8,paint_can cat dog\n"


def competition_dir(root: Path) -> Path:
    """What the fake Kaggle serves: the simplified zip, the test file, a raw file never fetched."""
    root.mkdir(parents=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for word in CLASSES:
            zf.writestr(f"{word}.csv", train_csv(word))
    (root / "train_simplified.zip").write_bytes(buffer.getvalue())
    (root / "test_simplified.csv").write_bytes(TEST_CSV)
    (root / "train_raw.zip").write_bytes(b"65 GB")
    return root


# A stand-in for the kaggle package at its boundary, importable as `kaggle` in a subprocess.
FAKE_KAGGLE = '''
import json, os, shutil, sys
from pathlib import Path
from types import SimpleNamespace

import requests


class KaggleApi:
    """Reads credentials like kaggle 2.x does; serves files from $FAKE_KAGGLE_DIR."""

    def authenticate(self):
        path = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
        if os.environ.get("KAGGLE_KEY"):
            self.key = os.environ["KAGGLE_KEY"]
        elif path.is_file():
            self.key = json.loads(path.read_text())["key"]
        else:
            print("Authentication required")
            sys.exit(1)

    def _fail(self):
        status = os.environ.get("FAKE_KAGGLE_FAIL")
        if status:  # a server that echoes the credentials back in its error
            response = requests.Response()
            response.status_code, response.reason = int(status), "Denied for " + self.key
            raise requests.HTTPError(f"{status} for url ?key={self.key}", response=response)

    def competition_list_files(self, competition, page_token=None, page_size=20):
        self._fail()
        root = Path(os.environ["FAKE_KAGGLE_DIR"])
        files = [SimpleNamespace(name=p.name, total_bytes=p.stat().st_size)
                 for p in sorted(root.iterdir())]
        return SimpleNamespace(files=files, next_page_token="")

    def competition_download_file(self, competition, file_name, path=None, force=False,
                                  quiet=False):
        self._fail()
        shutil.copyfile(Path(os.environ["FAKE_KAGGLE_DIR"]) / file_name, Path(path) / file_name)

    def competition_submit(self, file_name, message, competition, quiet=False):
        self._fail()
        return SimpleNamespace(message="Successfully submitted; token " + self.key, ref=1)
'''


def fake_kaggle_package(root: Path) -> Path:
    package = root / "kaggle" / "api"
    package.mkdir(parents=True)
    (root / "kaggle" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "kaggle_api_extended.py").write_text(FAKE_KAGGLE)
    return root


def write_kaggle_json(home: Path, mode: int) -> Path:
    path = home / ".kaggle" / "kaggle.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"username": USERNAME, "key": FILE_KEY}))
    path.chmod(mode)
    return path


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def leaking_files(root: Path, skip: Path | None = None) -> dict[str, list[str]]:
    """Every file under `root` (DVC's own folder included) that holds a credential."""
    found = {}
    for path in root.rglob("*"):
        is_file = path.is_file() and not path.is_symlink() and path != skip
        if is_file and (hits := leaks(path.read_bytes())):
            found[str(path.relative_to(root))] = hits
    return found


# ---------------------------------------------------------------- in process, hostile failures


class EchoingKaggle:
    """A Kaggle API whose every answer and error carries the credentials."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def _call(self) -> None:
        if self.error is not None:
            raise self.error

    def competition_list_files(self, competition, page_token=None, page_size=20):
        self._call()
        return SimpleNamespace(files=[], next_page_token="")

    def competition_submit(self, file_name, message, competition, quiet=False):
        self._call()
        return SimpleNamespace(message=f"Successfully submitted with key {ENV_KEY} {TOKEN}")


def echoing_http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code, response.reason = status, f"Denied {USERNAME}:{ENV_KEY} {TOKEN}"
    return requests.HTTPError(f"{status} for url ?key={FILE_KEY}", response=response)


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake credentials in every place the kaggle package looks: kaggle.json and env vars."""
    home = tmp_path / "home"
    kaggle_json = write_kaggle_json(home, 0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", ENV_KEY)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    return kaggle_json


@pytest.mark.parametrize(
    "error",
    [
        echoing_http_error(401),
        echoing_http_error(403),
        echoing_http_error(418),
        requests.ConnectionError(f"proxy refused https://{USERNAME}:{ENV_KEY}@kaggle.com"),
        None,  # success: the reply itself echoes the key
    ],
    ids=["401", "403", "418", "network", "echoing-reply"],
)
@pytest.mark.parametrize("path", ["download", "submit"])
def test_failures_never_show_credentials(
    workdir: Path,
    params: dict,
    credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    error: Exception | None,
    path: str,
) -> None:
    api = EchoingKaggle(error)
    monkeypatch.setattr(kaggle_api, "get_api", lambda: api)
    params["download"]["source"] = "kaggle"
    write_params(workdir, params)
    raw = workdir / "data" / "raw"
    (raw / "train_simplified").mkdir(parents=True)
    for word in CLASSES:
        (raw / "train_simplified" / f"{word}.csv").write_bytes(train_csv(word))
    (raw / "test_simplified.csv").write_bytes(TEST_CSV)
    (workdir / "submissions").mkdir()
    (workdir / "submissions" / "submission.csv").write_text(SUBMISSION)

    main = download.main if path == "download" else submit.main
    argv = [] if path == "download" else ["-m", "fake run"]
    with caplog.at_level(logging.DEBUG), pytest.raises((SystemExit, PipelineError)) as info:
        main(argv)
        raise PipelineError("finished")  # success: still inspect everything below
    out, err = capsys.readouterr()
    shown = "".join(traceback.format_exception(info.value)) + out + err + caplog.text
    assert leaks(shown) == []
    assert leaking_files(workdir, skip=credentials) == {}
    if path == "submit" and error is None:
        assert "***" in out  # the echoed key was redacted, not dropped silently
    else:
        assert info.value.code == 2 and err.startswith("error: ")  # one line, no traceback


# ---------------------------------------------------------------- the real CLIs, end to end


def test_download_and_submit_clis_leak_nothing(tmp_path: Path, params: dict) -> None:
    """`dvc repro download` and `python -m pipeline.submit` with the fake package and fake
    credentials (kaggle.json world-readable): every output, file and DVC file is clean."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_DIR / "pipeline", root / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy2(REPO_DIR / "dvc.yaml", root / "dvc.yaml")
    (root / "configs").mkdir()
    params["download"]["source"] = "kaggle"
    write_params(root, params)
    home = tmp_path / "home"
    kaggle_json = write_kaggle_json(home, 0o644)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "XDG_"))}
    env |= {
        "HOME": str(home),
        "PYTHONPATH": str(fake_kaggle_package(tmp_path / "fake")),
        "PATH": f"{bin_dir}:{env['PATH']}",  # the stage's `python` is the venv's
        "FAKE_KAGGLE_DIR": str(competition_dir(tmp_path / "kaggle")),
        "DVC_NO_ANALYTICS": "1",
        "KAGGLE_USERNAME": USERNAME,
        "KAGGLE_KEY": ENV_KEY,
    }

    def run(*cmd: str, code: int = 0, **extra: str) -> str:
        done = subprocess.run(cmd, cwd=root, env=env | extra, capture_output=True, timeout=180)
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == code, output
        assert leaks(done.stdout + done.stderr) == [], output
        return output

    run(str(bin_dir / "dvc"), "init", "--no-scm", "-q")
    out = run(str(bin_dir / "dvc"), "repro", "download")
    assert f"{kaggle_json} is readable by other users; run `chmod 600" in out
    assert sorted(p.name for p in (root / "data/raw/train_simplified").iterdir()) == [
        f"{w}.csv" for w in CLASSES
    ]
    assert (root / "dvc.lock").is_file()
    (root / "submissions").mkdir()
    (root / "submissions/submission.csv").write_text(SUBMISSION)
    out = run(sys.executable, "-m", "pipeline.submit", "-m", "fake run")
    assert "submitted submissions/submission.csv" in out and "token ***" in out
    out = run(sys.executable, "-m", "pipeline.submit", "-m", "x", code=2, FAKE_KAGGLE_FAIL="401")
    assert "rejected your credentials" in out
    # Metrics, data, cache, dvc.lock, DVC's cache and tmp folders, logs: all free of credentials.
    assert leaking_files(root) == {}
    assert leaking_files(home, skip=kaggle_json) == {}
