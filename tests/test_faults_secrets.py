"""Kaggle credentials never leak: not in logs, output, metrics, exceptions, data or DVC files.

The download and submit paths run the real kaggle client, with fake credentials in every place
it looks (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY, KAGGLE_API_TOKEN), against the local Kaggle
of kaggle_server.py set up to be hostile: every error message, every reply and every scoring
error it sends carries those credentials back. Once in process with each kind of failure, once
for real through `dvc repro download` and the submit command. Every byte they write or print
is then searched for the credentials.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import download, submit
from pipeline.common.errors import PipelineError
from pipeline.sources import kaggle_client
from tests.conftest import REPO_DIR, write_params
from tests.kaggle_server import (
    KaggleServer,
    client_env,
    free_port,
    point_client,
    subprocess_env,
)

USERNAME = "fake-user-7f3a9c"
FILE_KEY = "f11e5ec7e7f11e5ec7e7f11e5ec7e7aa"  # the key in kaggle.json
ENV_KEY = "e4e4e4e4deadbeefdeadbeefe4e4e4e4"  # KAGGLE_KEY
TOKEN = "KGAT_70c3e570c3e570c3e570c3e570c3e5"  # KAGGLE_API_TOKEN (kaggle 2.x style)
SECRETS = (USERNAME, FILE_KEY, ENV_KEY, TOKEN)
ECHO = f" (for {USERNAME}:{ENV_KEY}, key {FILE_KEY}, token {TOKEN})"  # in error messages
REPLY_ECHO = f" (key {ENV_KEY}, {FILE_KEY}, token {TOKEN})"  # in texts the pipeline shows
COMPETITION = "quickdraw-doodle-recognition"
CLASSES = ["cat", "dog", "paint can"]
TRAIN_HEADER = "countrycode,drawing,key_id,recognized,timestamp,word"
FAST = kaggle_client.Backoff(attempts=2, base_s=0.001, cap_s=0.01)


def train_csv(word: str) -> bytes:
    rows = [
        f'US,"[[[0, {i + 1}], [0, 9]]]",{100 + i},True,2017-01-01 00:00:00.0,{word}'
        for i in range(4)
    ]
    return (TRAIN_HEADER + "\n" + "\n".join(rows) + "\n").encode()


TEST_CSV = b'key_id,countrycode,drawing\n7,US,"[[[0, 9], [0, 9]]]"\n8,FR,"[[[1, 2], [3, 4]]]"\n'
SUBMISSION = "key_id,word\n7,cat dog paint_can\n8,paint_can cat dog\n"


def competition_files() -> dict[str, bytes]:
    """A tiny competition: the simplified zip, the test file, a raw file never fetched."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for word in CLASSES:
            zf.writestr(f"{word}.csv", train_csv(word))
    return {
        "train_simplified.zip": buffer.getvalue(),
        "test_simplified.csv": TEST_CSV,
        "train_raw.zip": b"65 GB",
    }


@pytest.fixture
def server() -> Iterator[KaggleServer]:
    """A Kaggle that knows the fake user and token and echoes them back in everything."""
    with KaggleServer(
        COMPETITION,
        competition_files(),
        {"7": "cat", "8": "paint_can"},
        users={USERNAME: ENV_KEY},
        tokens={TOKEN: USERNAME},
        rules_accepted={USERNAME},
        echo=ECHO,
        reply_echo=REPLY_ECHO,
    ) as running:
        yield running


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


def hostile(server: KaggleServer, failure: str, home: Path) -> dict[str, str]:
    """Set `server` up to fail as `failure` says; the client environment to use."""
    env = client_env(server, home)
    if failure in ("401", "418"):
        for method in ("ListDataFiles", "StartSubmissionUpload"):
            server.fail(method, int(failure), times=10, message="Denied")
    elif failure == "403":
        server.rules_accepted.clear()
    elif failure == "network":  # a proxy URL that carries credentials, and nothing listening
        env |= {"HTTP_PROXY": f"http://{USERNAME}:{ENV_KEY}@127.0.0.1:{free_port()}"}
        env |= {"http_proxy": env["HTTP_PROXY"]}
    elif failure == "scoring-error":
        server.solution["9"] = "dog"  # the file lacks a row: Kaggle's error echoes the key
    return env


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    """Fake credentials in kaggle.json; the env vars come with the client environment."""
    return write_kaggle_json(tmp_path / "home", 0o600)


FAILURES = ["401", "403", "418", "network", "echoing-reply", "scoring-error"]
CASES = [
    (path, failure)
    for path in ("download", "submit")
    for failure in FAILURES
    if (path, failure) != ("download", "scoring-error")
]


@pytest.mark.parametrize(("path", "failure"), CASES)
def test_failures_never_show_credentials(
    workdir: Path,
    params: dict,
    server: KaggleServer,
    credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    path: str,
) -> None:
    home = credentials.parent.parent
    env = hostile(server, failure, home)
    env |= {"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": ENV_KEY, "KAGGLE_API_TOKEN": TOKEN}
    point_client(monkeypatch, env, home)
    monkeypatch.setattr(kaggle_client, "BACKOFF", FAST)
    monkeypatch.setattr(submit, "POLL", kaggle_client.Backoff(1_000, 0.001, 0.01))
    params["download"]["source"] = "kaggle"
    write_params(workdir, params)
    if path == "submit":
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
    if failure == "echoing-reply":
        if path == "submit":
            assert "***" in out  # the echoed key was redacted, not dropped silently
        assert str(info.value) == "finished"
    else:
        assert info.value.code == 2 and err.rstrip().splitlines()[-1].startswith("error: ")
    if failure != "network":
        api_users = {c.user for c in server.calls if c.path.startswith("/api/")}
        assert api_users == {USERNAME}  # the token was used, and known


# ---------------------------------------------------------------- the real CLIs, end to end


@pytest.mark.slow
def test_download_and_submit_clis_leak_nothing(
    tmp_path: Path, params: dict, server: KaggleServer
) -> None:
    """`dvc repro download` and `python -m pipeline.submit` with fake credentials (kaggle.json
    world-readable) against the echoing Kaggle: every output, file and DVC file is clean."""
    root = tmp_path / "repo"
    shutil.copytree(
        REPO_DIR / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO_DIR / "dvc.yaml", root / "dvc.yaml")
    (root / "data" / "source").mkdir(parents=True)  # download.path, a dep of the stage
    params["download"]["source"] = "kaggle"
    write_params(root, params)
    home = tmp_path / "home"
    kaggle_json = write_kaggle_json(home, 0o644)
    bin_dir = Path(sys.executable).parent
    env = subprocess_env(
        server,
        home,
        KAGGLE_USERNAME=USERNAME,
        KAGGLE_KEY=ENV_KEY,
        KAGGLE_API_TOKEN=TOKEN,
        DVC_NO_ANALYTICS="1",
        PATH=f"{bin_dir}:{os.environ['PATH']}",
    )

    def run(*cmd: str, code: int = 0) -> str:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, timeout=300)
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
    assert "submitted submissions/submission.csv" in out and "key ***" in out
    assert "public score 1.00000" in out  # both rows right at rank 1
    server.fail("StartSubmissionUpload", 401, message="Denied")
    out = run(sys.executable, "-m", "pipeline.submit", "-m", "x", code=2)
    assert out.rstrip().splitlines()[-1] == f"error: {kaggle_client.BAD_CREDENTIALS}"
    # Metrics, data, cache, dvc.lock, DVC's cache and tmp folders, logs: all free of credentials.
    assert leaking_files(root) == {}
    assert leaking_files(home, skip=kaggle_json) == {}
