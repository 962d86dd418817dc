"""The Kaggle round trip with the real `kaggle` client against a local Kaggle (kaggle_server.py):
download, submit, the score back in DVC.

In process, the download stage and `pipeline.submit` run the installed client unchanged; the
server records every request, so each test states the exact requests a scenario costs. The
slow tests run `dvc repro`, the submit command and the `kaggle` CLI as subprocesses. The data
is the real kaggle16 sample (read from ../shared/quickdraw, never copied into the repo).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import download, submit
from pipeline.common.config import DownloadConfig, from_dict
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.sources import kaggle, kaggle_client
from tests.conftest import REPO_DIR, reference_apk, write_params
from tests.kaggle_server import (
    KaggleServer,
    client_env,
    competition_files,
    free_port,
    point_client,
    read_solution,
    subprocess_env,
    zip_bytes,
)

COMPETITION = "quickdraw-doodle-recognition"
USER = "kaggler-7f3a9c"
KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "KGAT_70c3e570c3e570c3e570c3e570c3"
LIST = "ListDataFiles"
FAST = kaggle_client.Backoff(attempts=4, base_s=0.001, cap_s=0.01)
# What Kaggle lists: five files, two per page; the pipeline fetches three of them.
LISTING = [LIST, LIST, LIST]
FETCHED = ("train_simplified.zip", "test_simplified.csv", "sample_submission.csv")


def fetched(*names: str) -> list[str]:
    """The requests of downloading `names` afresh: the API call, then its redirect's GET."""
    return [r for n in names for r in ("DownloadDataFile", f"GET /files/{n}")]


@pytest.fixture(scope="session")
def served(kaggle16_dir: Path) -> dict[str, bytes]:
    return competition_files(kaggle16_dir)


@pytest.fixture
def server(served: dict[str, bytes], kaggle16_dir: Path) -> Iterator[KaggleServer]:
    solution = read_solution(kaggle16_dir / "test_solution.csv")
    with KaggleServer(
        COMPETITION, dict(served), solution, users={USER: KEY}, rules_accepted={USER}
    ) as running:
        yield running


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def use_client(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], home: Path) -> None:
    """The real client in this process, configured by `env`; retries without real waits."""
    point_client(monkeypatch, env, home)
    monkeypatch.setattr(kaggle_client, "BACKOFF", FAST)


@pytest.fixture
def client(server: KaggleServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> KaggleServer:
    """The real client, in this process, talking to `server` as USER (KAGGLE_USERNAME/KEY)."""
    env = client_env(server, home) | {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    use_client(monkeypatch, env, home)
    return server


@pytest.fixture
def cfg(params: dict, workdir: Path) -> DownloadConfig:
    params["download"]["source"] = "kaggle"
    write_params(workdir, params)
    return from_dict(DownloadConfig, params["download"])


def fetch(cfg: DownloadConfig) -> dict:
    return download.run(cfg, Paths.under("."))


def fail_line(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run a CLI that must fail the user's way: exit 2, one `error:` line, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert "Traceback" not in out + err
    return errors[0].removeprefix("error: ")


# ---------------------------------------------------------------- downloading


def test_download_fetches_the_simplified_files_and_lays_them_out(
    client: KaggleServer, cfg: DownloadConfig, workdir: Path, kaggle16_dir: Path
) -> None:
    metrics = fetch(cfg)
    # Listed page by page; only the simplified files are fetched, never the raw ones.
    assert client.names() == LISTING + fetched(*FETCHED)
    assert {c.user for c in client.calls} == {USER}
    raw = workdir / "data" / "raw"
    expected = sorted((kaggle16_dir / "train_simplified").glob("*.csv"))
    got = sorted((raw / "train_simplified").iterdir())
    assert [p.name for p in got] == [p.name for p in expected]  # 'paint can.csv' included
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(got, expected, strict=True))
    assert (raw / "test_simplified.csv").read_bytes() == (
        kaggle16_dir / "test_simplified.csv"
    ).read_bytes()
    assert (metrics["train/files"], metrics["train/rows"], metrics["test/rows"]) == (
        16,
        10000,
        1600,
    )
    cache = workdir / "data" / "cache" / COMPETITION
    assert sorted(p.name for p in cache.iterdir()) == sorted(FETCHED)  # no .partial left


def test_rerun_downloads_nothing(client: KaggleServer, cfg: DownloadConfig) -> None:
    fetch(cfg)
    client.clear()
    fetch(cfg)
    assert client.names() == LISTING  # sizes match the listing: every file is complete


def test_a_cut_off_download_resumes_from_where_it_stopped(
    client: KaggleServer, cfg: DownloadConfig, workdir: Path, served: dict[str, bytes]
) -> None:
    client.cut("train_simplified.zip", after=1_500_000)  # then the connection drops
    fetch(cfg)
    zip_calls = [str(c) for c in client.calls if "train_simplified.zip" in c.path]
    # The client wrote whole 1 MiB chunks before the cut, and asks for the rest only.
    assert zip_calls == [
        "GET /files/train_simplified.zip -> 200",
        f"GET /files/train_simplified.zip (Range: bytes={1 << 20}-) -> 206",
    ]
    cached = workdir / "data" / "cache" / COMPETITION / "train_simplified.zip"
    assert cached.read_bytes() == served["train_simplified.zip"]


def test_a_partial_file_from_an_earlier_run_is_resumed(
    client: KaggleServer, cfg: DownloadConfig, workdir: Path, served: dict[str, bytes]
) -> None:
    """What a killed run leaves (the bytes so far and the client's marker of which file they
    belong to) is resumed with Range; the slow dvc test kills a real run to make it."""
    fetch(cfg)
    cache = workdir / "data" / "cache" / COMPETITION
    staging = cache / ".partial" / "test_simplified.csv"
    staging.mkdir(parents=True)
    whole = served["test_simplified.csv"]
    (staging / "test_simplified.csv").write_bytes(whole[:300_000])
    marker = {"validator": client.etag(whole), "size": len(whole)}
    (staging / "test_simplified.csv.kaggle-partial").write_text(json.dumps(marker))
    (cache / "test_simplified.csv").unlink()
    client.clear()
    fetch(cfg)
    assert client.log() == [f"{LIST} -> 200"] * 3 + [
        "DownloadDataFile -> 302",
        "GET /files/test_simplified.csv -> 200",  # the redirect's GET, abandoned for:
        "GET /files/test_simplified.csv (Range: bytes=300000-) -> 206",
    ]
    assert (cache / "test_simplified.csv").read_bytes() == whole
    assert not (cache / ".partial").exists() or not any((cache / ".partial").iterdir())


def test_transient_503s_and_429s_are_retried(
    client: KaggleServer, cfg: DownloadConfig, caplog: pytest.LogCaptureFixture
) -> None:
    client.fail(LIST, 503)
    client.fail("DownloadDataFile", 429, retry_after="0")
    client.fail("test_simplified.csv", 502)  # the file behind the redirect
    with caplog.at_level(logging.WARNING):
        fetch(cfg)
    assert client.log()[:2] == [f"{LIST} -> 503", f"{LIST} -> 200"]
    assert client.names()[4:11] == [
        "DownloadDataFile",  # 429
        *fetched("train_simplified.zip", "test_simplified.csv"),  # the csv: 502
        *fetched("test_simplified.csv"),
    ]
    assert [c.status for c in client.calls[4:11]] == [429, 302, 200, 302, 502, 302, 200]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3 and "HTTP 503 Service Unavailable; retrying in" in retries[0]


def test_a_failure_that_lasts_ends_with_one_line(
    client: KaggleServer, cfg: DownloadConfig, capsys: pytest.CaptureFixture
) -> None:
    client.fail(LIST, 503, times=100)
    line = fail_line(download.main, [], capsys)
    assert line == "Kaggle API error (HTTP 503 Service Unavailable) (4 tries); try again later"
    assert client.names() == [LIST] * FAST.attempts


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad key", kaggle_client.BAD_CREDENTIALS),
        (
            "rules",
            f"Kaggle denied access to '{COMPETITION}' (HTTP 403); accept the rules at "
            f"https://www.kaggle.com/competitions/{COMPETITION}/rules with the account of "
            "your API token, then rerun",
        ),
        (
            "unknown competition",
            "competition 'no-such-competition' not found on Kaggle (HTTP "
            "404); check `download.competition` in params.yaml (or "
            "--competition)",
        ),
        (
            "rate limit",
            "Kaggle is rate-limiting requests (HTTP 429) (4 tries); wait a few minutes and rerun",
        ),
    ],
)
def test_http_errors_are_one_line_that_says_what_to_do(
    client: KaggleServer,
    cfg: DownloadConfig,
    params: dict,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    case: str,
    expected: str,
) -> None:
    if case == "bad key":
        monkeypatch.setenv("KAGGLE_KEY", "f" * 32)
    elif case == "rules":
        client.rules_accepted.clear()
    elif case == "unknown competition":
        params["download"] |= {"source": "kaggle", "competition": "no-such-competition"}
        write_params(workdir, params)
    else:
        client.fail(LIST, 429, times=100)
    assert fail_line(download.main, [], capsys) == expected
    assert not (workdir / "data" / "raw").exists()
    # 401, 403 and 404 are not retried: trying again cannot help.
    assert client.names() == [LIST] * (FAST.attempts if case == "rate limit" else 1)


def test_no_network_is_one_line(
    cfg: DownloadConfig, home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    env = client_env(free_port(), home) | {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    use_client(monkeypatch, env, home)
    line = fail_line(download.main, [], capsys)
    assert line == (
        "cannot reach kaggle.com (4 tries); check your network connection or proxy, then rerun"
    )


def test_missing_credentials_with_the_real_package(tmp_path: Path, params: dict) -> None:
    """No credentials anywhere, a fresh process: one line, none of the client's help, exit 2."""
    params["download"]["source"] = "kaggle"
    write_params(tmp_path, params)
    home = tmp_path / "home"
    env = subprocess_env(free_port(), home, PYTHONPATH=str(REPO_DIR))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.download"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {kaggle_client.NO_CREDENTIALS}"]
    assert "Authentication required" not in result.stdout
    assert not (tmp_path / "data" / "raw").exists()


def test_train_csvs_listed_one_by_one(
    client: KaggleServer, cfg: DownloadConfig, workdir: Path, served: dict[str, bytes]
) -> None:
    # Without the zip, Kaggle lists train_simplified/<word>.csv; the client names the file it
    # saves after the URL ('paint%20can.csv'), and the stage puts it back under its own name.
    with zipfile.ZipFile(io.BytesIO(served["train_simplified.zip"])) as zf:
        csvs = {f"train_simplified/{n}": zf.read(n) for n in ("cat.csv", "paint can.csv")}
    del client.files["train_simplified.zip"]
    client.files |= csvs
    fetch(cfg)
    train = workdir / "data" / "raw" / "train_simplified"
    assert sorted(p.name for p in train.iterdir()) == ["cat.csv", "paint can.csv"]
    assert (train / "paint can.csv").read_bytes() == csvs["train_simplified/paint can.csv"]
    assert "GET /files/train_simplified/paint can.csv" in client.names()


def test_a_file_kaggle_serves_zipped_is_unwrapped(
    client: KaggleServer, cfg: DownloadConfig, workdir: Path, served: dict[str, bytes]
) -> None:
    client.zipped.add("test_simplified.csv")  # the listing still gives the unzipped size
    fetch(cfg)
    assert "GET /files/test_simplified.csv.zip" in client.names()
    raw_test = workdir / "data" / "raw" / "test_simplified.csv"
    assert raw_test.read_bytes() == served["test_simplified.csv"]


def hostile_zip(member: str, symlink: bool) -> bytes:
    info = zipfile.ZipInfo(member)
    if symlink:
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cat.csv", "countrycode,drawing,key_id,recognized,timestamp,word\n")
        zf.writestr(info, "/etc/passwd" if symlink else "x")  # after a good member
    return buffer.getvalue()


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
    client: KaggleServer, cfg, workdir: Path, member: str, symlink: bool, expected: str
) -> None:
    client.files["train_simplified.zip"] = hostile_zip(member, symlink)
    with pytest.raises(PipelineError, match=expected) as err:
        fetch(cfg)
    assert "train_simplified.zip" in str(err.value)
    assert not (workdir / "data" / "raw").exists()
    assert not list(workdir.rglob("evil.csv")) and not list(workdir.rglob("cat.csv"))


def test_truncated_zip_names_the_file(
    client: KaggleServer, cfg, workdir: Path, served: dict[str, bytes]
) -> None:
    whole = served["train_simplified.zip"]
    client.files["train_simplified.zip"] = whole[: len(whole) // 2]  # listed at this size
    with pytest.raises(PipelineError, match="truncated or corrupt") as err:
        fetch(cfg)
    assert f"data/cache/{COMPETITION}/train_simplified.zip is" in str(err.value)
    assert "delete it and rerun" in str(err.value)
    assert not (workdir / "data" / "raw").exists()


def test_corrupt_member_data_names_the_file(client: KaggleServer, cfg) -> None:
    header = b"countrycode,drawing,key_id,recognized,timestamp,word\n"
    data = bytearray(zip_bytes({"cat.csv": header}, zipfile.ZIP_STORED))
    data[data.index(b"countrycode")] ^= 0xFF  # flip a byte of the stored CSV: CRC mismatch
    client.files["train_simplified.zip"] = bytes(data)
    with pytest.raises(PipelineError, match=r"train_simplified\.zip is truncated or corrupt"):
        fetch(cfg)


# ---------------------------------------------------------------- credentials


def write_json(path: Path, data: dict, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "where",
    [
        "env key",
        "kaggle.json",
        "KAGGLE_CONFIG_DIR",
        "KAGGLE_API_TOKEN",
        "token file",
        "access_token",
        "kaggle auth login",
    ],
)
def test_credentials_where_kaggle_2_looks_for_them(
    server: KaggleServer,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    where: str,
) -> None:
    env = client_env(server, home)
    server.tokens[TOKEN] = USER
    if where == "env key":
        env |= {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    elif where == "kaggle.json":
        write_json(home / ".kaggle" / "kaggle.json", {"username": USER, "key": KEY})
    elif where == "KAGGLE_CONFIG_DIR":
        write_json(tmp_path / "conf" / "kaggle.json", {"username": USER, "key": KEY})
        env |= {"KAGGLE_CONFIG_DIR": str(tmp_path / "conf")}
    elif where == "KAGGLE_API_TOKEN":
        env |= {"KAGGLE_API_TOKEN": TOKEN}
    elif where == "token file":  # KAGGLE_API_TOKEN may name a file holding the token
        (tmp_path / "token").write_text(TOKEN + "\n")
        env |= {"KAGGLE_API_TOKEN": str(tmp_path / "token")}
    elif where == "access_token":
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / "access_token").write_text(TOKEN)
    else:  # what `kaggle auth login` leaves: a refresh token, exchanged for an access token
        server.refresh_tokens["refresh-5ecret-5ecret"] = USER
        write_json(
            home / ".kaggle" / "credentials.json",
            {"refresh_token": "refresh-5ecret-5ecret", "username": USER},
        )
    use_client(monkeypatch, env, home)
    listing = kaggle.list_competition_files(kaggle_client.get_api(), COMPETITION)
    assert sorted(listing) == sorted(server.files)
    assert server.calls[-1].user == USER  # the listing was made with these credentials
    bearer = where not in ("env key", "kaggle.json", "KAGGLE_CONFIG_DIR")
    assert ("IntrospectToken" in server.names() or "GenerateAccessToken" in server.names()) is (
        bearer
    )
    out, err = capsys.readouterr()
    assert KEY not in out + err and TOKEN not in out + err


def test_an_expired_api_token_is_one_line(
    server: KaggleServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_client(monkeypatch, client_env(server, home) | {"KAGGLE_API_TOKEN": TOKEN}, home)
    with pytest.raises(PipelineError) as err:
        kaggle_client.get_api()  # the server does not know TOKEN
    assert str(err.value) == kaggle_client.BAD_TOKEN
    assert server.names() == ["IntrospectToken"]


def test_loose_kaggle_json_permissions_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_json(tmp_path / "kaggle.json", {"username": USER, "key": KEY})
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    assert kaggle_client.kaggle_json_path() == path
    assert not kaggle_client.warn_if_loose_permissions(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert kaggle_client.warn_if_loose_permissions(path)
    assert f"{path} is readable by other users; run `chmod 600 {path}`" in caplog.text
    assert KEY not in caplog.text


def test_redact_hides_every_credential_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    write_json(tmp_path / ".kaggle" / "kaggle.json", {"username": USER, "key": "j" * 32})
    write_json(
        tmp_path / ".kaggle" / "credentials.json",
        {"refresh_token": "r" * 20, "access_token": "a" * 20},
    )
    text = f"url?key={KEY}&t={TOKEN} {'j' * 32} {'r' * 20} {'a' * 20} ok"
    assert kaggle_client.redact(text) == "url?key=***&t=*** *** *** *** ok"
    # A token this process was never given is still recognised by its shape.
    assert kaggle_client.redact("token KGAT_0a1b2c3d4e5f6a7b.") == "token ***."


def test_backoff_grows_with_jitter_and_is_bounded() -> None:
    backoff = kaggle_client.Backoff(attempts=6, base_s=2.0, cap_s=10.0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (5, 10.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert backoff.delay(1, retry_after=3.0) == 3.0
    assert backoff.delay(1, retry_after=600.0) == 10.0  # a server's Retry-After, capped too


# ---------------------------------------------------------------- submitting


@pytest.fixture
def repo(workdir: Path, kaggle16_dir: Path) -> Path:
    """data/raw as the download stage leaves it (class names and the test file)."""
    train = workdir / "data" / "raw" / "train_simplified"
    train.mkdir(parents=True)
    for path in (kaggle16_dir / "train_simplified").glob("*.csv"):
        (train / path.name).write_text("countrycode,drawing,key_id,recognized,timestamp,word\n")
    shutil.copyfile(kaggle16_dir / "test_simplified.csv", train.parent / "test_simplified.csv")
    (workdir / "submissions").mkdir()
    return workdir


def hand_scored_submission(path: Path, solution: dict[str, str], classes: list[str]) -> float:
    """Rows in turn put the true label at rank 1, 2, 3, then nowhere: MAP@3 (1 + 1/2 + 1/3 +
    0) / 4 = 11/24 over 1,600 rows (400 of each)."""
    lines = ["key_id,word"]
    for i, (key, truth) in enumerate(solution.items()):
        others = [c for c in classes if c != truth][i % 13 : i % 13 + 3]
        ranked = others[:2]
        if i % 4 < 3:
            ranked.insert(i % 4, truth)
        else:
            ranked.append(others[2])
        lines.append(f"{key},{' '.join(ranked)}")
    path.write_text("\n".join(lines) + "\n")
    return 11 / 24


@pytest.fixture
def submission(repo: Path, kaggle16_dir: Path) -> tuple[Path, float]:
    classes = sorted(
        p.stem.replace(" ", "_") for p in (kaggle16_dir / "train_simplified").iterdir()
    )
    solution = read_solution(kaggle16_dir / "test_solution.csv")
    path = repo / "submissions" / "submission.csv"
    return path, hand_scored_submission(path, solution, classes)


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit, "POLL", kaggle_client.Backoff(1_000, 0.001, 0.01))


def test_server_scores_map3_from_its_definition() -> None:
    server = KaggleServer(COMPETITION, {}, {"1": "cat", "2": "dog", "3": "eye", "4": "sun"})
    rows = ["1,cat dog eye", "2,cat dog eye", "3,cat dog eye", "4,sun sun dog"]
    assert server.score(("key_id,word\n" + "\n".join(rows)).encode()) == (
        f"{(1 + 1 / 2 + 1 / 3 + 1) / 4:.5f}",  # a repeated label counts once
        None,
    )
    assert (
        server.score(b"key_id,word\n1,cat\n")[1]
        == "Submission must have 4 rows with the test key_ids"
    )
    assert reference_apk(["dog"], ["cat", "dog", "eye"]) == 0.5  # conftest agrees


def test_submit_uploads_the_file_and_waits_for_the_score(
    client: KaggleServer,
    submission: tuple[Path, float],
    fast_poll: None,
    capsys: pytest.CaptureFixture,
) -> None:
    path, expected = submission
    submit.main(["-m", "hand-made, 11/24"])
    assert client.names()[:1] == ["StartSubmissionUpload"]
    assert client.names()[1].startswith("PUT /upload/blob-")
    assert client.names()[2:] == ["CreateSubmission", "ListSubmissions", "ListSubmissions"]
    (uploaded,) = [data for data in client.uploads.values() if data]
    assert uploaded == path.read_bytes()
    (made,) = client.submissions
    out = capsys.readouterr().out
    assert f"submitted submissions/submission.csv to {COMPETITION} (submission {made.ref})" in out
    assert f"submission {made.ref}: public score {expected:.5f}" in out
    metrics = json.loads(Path("metrics/submit.json").read_text())
    assert metrics == {
        "leaderboard/public_score": pytest.approx(expected, abs=5e-6),
        "submission/competition": COMPETITION,
        "submission/date": made.date.isoformat(timespec="seconds") + "Z",
        "submission/file": "submissions/submission.csv",
        "submission/message": "hand-made, 11/24",
        "submission/ref": made.ref,
        "submission/rows": 1600,
        "submission/status": "COMPLETE",
    }
    assert made.description == "hand-made, 11/24"


def test_no_wait_then_status(
    client: KaggleServer, submission: tuple[Path, float], fast_poll: None
) -> None:
    client.pending_polls = 3
    submit.main(["-m", "later", "--no-wait"])
    assert client.names()[-1] == "CreateSubmission"
    pending = json.loads(Path("metrics/submit.json").read_text())
    assert pending["submission/status"] == "PENDING" and "leaderboard/public_score" not in pending
    client.clear()
    submit.main(["--status"])
    assert client.names() == ["ListSubmissions"] * 4  # three PENDING answers, then the score
    done = json.loads(Path("metrics/submit.json").read_text())
    assert done["submission/status"] == "COMPLETE"
    assert done["leaderboard/public_score"] == pytest.approx(submission[1], abs=5e-6)
    assert (
        done["submission/message"] == "later"
        and done["submission/ref"] == pending["submission/ref"]
    )


def test_waiting_is_bounded(
    client: KaggleServer, submission, fast_poll: None, capsys: pytest.CaptureFixture
) -> None:
    client.pending_polls = 10**6
    submit.main(["-m", "slow scoring", "--timeout", "0.2"])
    assert "is still being scored; run `python -m pipeline.submit --status` later" in (
        capsys.readouterr().out
    )
    assert json.loads(Path("metrics/submit.json").read_text())["submission/status"] == "PENDING"


def test_a_file_kaggle_cannot_score_is_one_line(
    client: KaggleServer, submission, fast_poll: None, capsys: pytest.CaptureFixture
) -> None:
    client.solution["123"] = "cat"  # Kaggle expects a row the file does not have
    line = fail_line(submit.main, ["-m", "wrong test set"], capsys)
    ref = client.submissions[0].ref
    assert line == (
        f"Kaggle could not score submission {ref} (Submission must have 1601 rows with the test "
        "key_ids); fix the file and submit again"
    )
    assert json.loads(Path("metrics/submit.json").read_text())["submission/status"] == "ERROR"


def test_a_failure_while_waiting_says_the_submission_stands(
    client: KaggleServer, submission, capsys: pytest.CaptureFixture
) -> None:
    client.fail("ListSubmissions", 503, times=100)
    line = fail_line(submit.main, ["-m", "x"], capsys)
    ref = client.submissions[0].ref
    assert line == (
        "Kaggle API error (HTTP 503 Service Unavailable) (4 tries); try again later (submission "
        f"{ref} was made; `python -m pipeline.submit --status` fetches its score)"
    )
    assert json.loads(Path("metrics/submit.json").read_text())["submission/ref"] == ref


def test_an_invalid_file_is_never_uploaded(
    client: KaggleServer, submission, capsys: pytest.CaptureFixture
) -> None:
    path, _ = submission
    path.write_text(path.read_text().replace("key_id,word", "key_id,words"))
    assert "header must be 'key_id,word'" in fail_line(submit.main, ["-m", "x"], capsys)
    assert client.calls == []  # not even signed in


def test_a_failed_upload_is_one_line_and_nothing_is_submitted(
    client: KaggleServer, submission, capsys: pytest.CaptureFixture
) -> None:
    client.fail("PUT", 403)
    line = fail_line(submit.main, ["-m", "x"], capsys)
    assert line.startswith("the upload of submissions/submission.csv to Kaggle failed (nothing")
    assert "CreateSubmission" not in client.names() and client.submissions == []


def test_a_5xx_on_create_is_not_retried(
    client: KaggleServer, submission, capsys: pytest.CaptureFixture
) -> None:
    # The submission may have been made: trying again could spend a second daily slot.
    client.fail("CreateSubmission", 503)
    line = fail_line(submit.main, ["-m", "x"], capsys)
    assert line == "Kaggle API error (HTTP 503 Service Unavailable); try again later"
    assert client.names().count("CreateSubmission") == 1


def test_submit_without_accepted_rules_is_one_line(
    client: KaggleServer, submission, capsys: pytest.CaptureFixture
) -> None:
    client.rules_accepted.clear()
    assert "accept the rules at" in fail_line(submit.main, ["-m", "x"], capsys)
    assert client.names() == ["StartSubmissionUpload"]


# ---------------------------------------------------------------- the CLIs, end to end


def test_kaggle_cli_submits_the_same_file(
    server: KaggleServer, submission: tuple[Path, float], home: Path, workdir: Path
) -> None:
    path, expected = submission
    env = subprocess_env(server, home, KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY)
    kaggle_cli = Path(sys.executable).parent / "kaggle"
    done = subprocess.run(
        [
            str(kaggle_cli),
            "competitions",
            "submit",
            "-c",
            COMPETITION,
            "-f",
            "submissions/submission.csv",
            "-m",
            "from the kaggle CLI",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully submitted" in done.stdout
    assert server.names()[0] == "StartSubmissionUpload"
    assert server.names()[2:] == ["CreateSubmission", "GetSubmissionLimits"]
    (uploaded,) = [data for data in server.uploads.values() if data]
    assert uploaded == path.read_bytes()
    assert server.submissions[0].public_score == f"{expected:.5f}"


def make_repo(root: Path, params: dict) -> Path:
    shutil.copytree(
        REPO_DIR / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO_DIR / "dvc.yaml", root / "dvc.yaml")
    (root / "data" / "source").mkdir(parents=True)  # download.path, a dep of the stage
    params["download"]["source"] = "kaggle"
    params["preprocess"]["max_per_class"] = 100
    write_params(root, params)
    return root


def score_file(submission_csv: Path, solution_csv: Path) -> float:
    """MAP@3 of a submission with conftest's reference apk (neither the server nor pipeline)."""
    truth = dict(csv.reader(solution_csv.read_text().splitlines()[1:]))
    rows = list(csv.reader(submission_csv.read_text().splitlines()[1:]))
    return sum(reference_apk([truth[k]], w.split(" ")) for k, w in rows) / len(rows)


@pytest.mark.slow
def test_dvc_round_trip_kill_resume_submit_and_metrics(
    server: KaggleServer,
    served: dict[str, bytes],
    tmp_path: Path,
    params: dict,
    kaggle16_dir: Path,
) -> None:
    """The README's round trip: `dvc repro` with download.source=kaggle (killed mid-download
    first, then resumed), a rerun that downloads nothing, `python -m pipeline.submit`, the
    score in `dvc metrics show`."""
    root = make_repo(tmp_path / "repo", params)
    bin_dir = Path(sys.executable).parent
    env = subprocess_env(
        server,
        tmp_path / "home",
        KAGGLE_USERNAME=USER,
        KAGGLE_KEY=KEY,
        DVC_NO_ANALYTICS="1",
        PATH=f"{bin_dir}:{os.environ['PATH']}",
    )

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert KEY not in done.stdout + done.stderr
        return done.stdout + done.stderr

    run(str(bin_dir / "dvc"), "init", "--no-scm", "-q")
    # 1. Killed part-way through the zip: the bytes so far stay in data/cache/.../.partial.
    server.stall("train_simplified.zip", after=3_000_000)
    partial = root / f"data/cache/{COMPETITION}/.partial/train_simplified.zip/train_simplified.zip"
    proc = subprocess.Popen(
        [str(bin_dir / "dvc"), "repro", "download"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (partial.is_file() and partial.stat().st_size >= 1 << 20):
        assert proc.poll() is None and time.monotonic() < deadline, "never got part-way"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    server.release()
    have = partial.stat().st_size
    assert 0 < have < len(served["train_simplified.zip"])
    assert not (root / "data" / "raw").exists()

    # 2. The whole pipeline: the zip resumes from `have`, nothing already fetched is refetched.
    server.clear()
    out = run(str(bin_dir / "dvc"), "repro")
    zip_calls = [str(c) for c in server.calls if "train_simplified.zip" in c.path]
    assert zip_calls[-1] == f"GET /files/train_simplified.zip (Range: bytes={have}-) -> 206"
    assert "Running stage 'predict'" in out
    cache = root / "data" / "cache" / COMPETITION
    assert (cache / "train_simplified.zip").read_bytes() == served["train_simplified.zip"]
    assert len(list((root / "data/raw/train_simplified").glob("*.csv"))) == 16

    # 3. Forced rerun of the download: one listing, no download, nothing downstream reruns.
    server.clear()
    out = run(str(bin_dir / "dvc"), "repro", "--force", "download")
    assert server.names() == LISTING
    out = run(str(bin_dir / "dvc"), "repro")
    assert "Running stage" not in out

    # 4. Submit: uploaded bytes are the file, the score comes back into metrics/submit.json.
    server.clear()
    out = run(sys.executable, "-m", "pipeline.submit", "-m", "gru, kaggle16 via dvc")
    sub = root / "submissions" / "submission.csv"
    (uploaded,) = [data for data in server.uploads.values() if data]
    assert uploaded == sub.read_bytes()
    expected = score_file(sub, kaggle16_dir / "test_solution.csv")
    (made,) = server.submissions
    assert f"submission {made.ref}: public score {expected:.5f}" in out
    shown = json.loads(run(str(bin_dir / "dvc"), "metrics", "show", "--json"))[""]["data"]
    board = shown["metrics/submit.json"]["data"]
    assert board["leaderboard/public_score"] == pytest.approx(expected, abs=5e-6)
    assert board["submission/ref"] == made.ref
    assert board["submission/message"] == "gru, kaggle16 via dvc"
    assert "val/map3" in shown["metrics/evaluate.json"]["data"]
    table = run(str(bin_dir / "dvc"), "metrics", "show")
    assert "leaderboard/public_score" in table and "val/map3" in table
    # Nothing the pipeline wrote holds the key.
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), path
