"""Kill any stage part-way (SIGKILL, as an OOM killer or a closed laptop does), then rerun it:
the rerun completes with the right outputs, and no partial output is ever left where a complete
one belongs. Training resumes from its last checkpoint instead of starting over.

Each stage runs as `python -m pipeline.<stage> --params params.yaml` in a folder laid out
like the repo. It is killed either when a sign of progress appears (a temp folder or checkpoint),
or, for the short stages, by a hook that SIGKILLs the process at its k-th `os.replace`: exactly
between committing one output and the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pipeline import blend, download, evaluate, predict, preprocess, train
from pipeline.common.config import DownloadConfig, PreprocessConfig, from_dict
from pipeline.common.paths import Paths
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.scoring.submission import validate_submission
from tests.conftest import REPO_DIR, make_polygon_store, tiny_params, write_params

# Loaded by every Python process started with the hooks folder on PYTHONPATH.
KILL_HOOK = """
import os, signal

_at = int(os.environ.get("KILL_AT_REPLACE", "0"))
if _at:
    _replace, _calls = os.replace, [0]

    def _replace_or_die(*args, **kwargs):
        _calls[0] += 1
        if _calls[0] == _at:
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(*args, **kwargs)

    os.replace = _replace_or_die
"""


def make_root(root: Path, params: dict) -> Path:
    root.mkdir(parents=True)
    write_params(root, params)
    install_hook(root)
    return root


def install_hook(root: Path) -> None:
    hooks = root.parent / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(KILL_HOOK)


def stage_cmd(stage: str) -> list[str]:
    """The stage's command as dvc.yaml runs it: `train@gru` is `pipeline.train --member gru`."""
    module, _, member = stage.partition("@")
    command = [sys.executable, "-m", f"pipeline.{module}", "--params", "params.yaml"]
    return command + (["--member", member] if member else [])


def stage_env(root: Path, **extra: str) -> dict[str, str]:
    path = f"{root.parent / 'hooks'}{os.pathsep}{REPO_DIR}"
    return os.environ | {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"} | extra


def start(stage: str, root: Path) -> subprocess.Popen:
    log = open(root / f"{stage.replace('@', '-')}.log", "ab")  # noqa: SIM115 (closed with it)
    return subprocess.Popen(
        stage_cmd(stage), cwd=root, env=stage_env(root), stdout=log, stderr=subprocess.STDOUT
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()`; fail if the stage ended first (nothing was tested)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            return
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the stage ended (code {proc.returncode}) before it could be killed part-way")


def run_stage(stage: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        stage_cmd(stage),
        cwd=root,
        env=stage_env(root, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def finish(stage: str, root: Path) -> str:
    done = run_stage(stage, root)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stderr


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def temp_items(folder: Path, name: str) -> list[Path]:
    return list(folder.glob(f".{name}.tmp-*"))


# ---------------------------------------------------------------- download and preprocess


def test_killed_download_is_never_accepted_and_reruns_to_the_same_files(
    tmp_path: Path, params: dict
) -> None:
    params["download"]["synthetic_train_per_class"] = 2000  # about a second of drawing
    root = make_root(tmp_path / "repo", params)
    reference = tmp_path / "reference"
    elsewhere = dataclasses.replace(Paths.under(tmp_path), raw_dir=reference)
    download.run(from_dict(DownloadConfig, params["download"]), elsewhere)
    data = root / "data"

    # Killed on its first run, after the first class file was written.
    proc = start("download", root)
    kill_when(proc, lambda: any(data.glob(".raw.tmp-*/train_simplified/*.csv")))
    assert not (data / "raw").exists() and not (root / "metrics/download.json").exists()
    finish("download", root)
    assert snapshot(data / "raw") == snapshot(reference)
    assert temp_items(data, "raw") == []  # the killed run's temp folder was cleared

    # Killed while redoing it: the previous complete output is still there, whole.
    proc = start("download", root)
    kill_when(proc, lambda: any(data.glob(".raw.tmp-*/train_simplified/*.csv")))
    assert snapshot(data / "raw") == snapshot(reference)


def test_killed_preprocess_keeps_the_old_store_and_reruns_to_the_same_store(
    tmp_path: Path, params: dict
) -> None:
    params["download"]["synthetic_train_per_class"] = 1000
    root = make_root(tmp_path / "repo", params)
    download.run(from_dict(DownloadConfig, params["download"]), Paths.under(root))
    reference = tmp_path / "reference"
    elsewhere = dataclasses.replace(
        Paths.under(tmp_path), raw_dir=root / "data/raw", processed_dir=reference
    )
    preprocess.run(
        from_dict(PreprocessConfig, params["preprocess"]), elsewhere, show_progress=False
    )
    data = root / "data"

    def parsing() -> bool:
        return any(data.glob(".processed.tmp-*/runs/*.run"))

    proc = start("preprocess", root)
    kill_when(proc, parsing)
    assert not (data / "processed").exists()
    finish("preprocess", root)
    assert snapshot(data / "processed") == snapshot(reference)
    assert temp_items(data, "processed") == []

    proc = start("preprocess", root)
    kill_when(proc, parsing)
    assert snapshot(data / "processed") == snapshot(reference)
    DrawingStore(data / "processed" / "drawings.zarr")  # still opens: complete


# ---------------------------------------------------------------- train


def last_state(root: Path) -> dict:
    return torch.load(root / "checkpoints/gru/last.pt", weights_only=True)["state"]


def history_rows(root: Path) -> list[dict]:
    """The validation rows logged so far (a line cut by the kill left out)."""
    rows = []
    for line in (root / "checkpoints/gru/history.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path: Path, params: dict) -> None:
    params["train"].update(epochs=12, threads=1)  # 5 steps per epoch, a checkpoint per epoch
    root = make_root(tmp_path / "repo", params)
    make_polygon_store(root / "data/processed/drawings.zarr")
    checkpoint = root / "checkpoints/gru/last.pt"
    model = root / "models/members/gru/model.pt"

    def a_few_epochs_done() -> bool:
        return checkpoint.is_file() and last_state(root)["step"] >= 15

    proc = start("train@gru", root)
    kill_when(proc, a_few_epochs_done)
    killed = last_state(root)
    killed_rows = history_rows(root)[: killed["n_rows"]]  # a row logged after last.pt is redone
    assert 15 <= killed["step"] < killed["total_steps"]
    if model.exists():  # whatever was exported is a whole, loadable model
        load_model(model)

    log = finish("train@gru", root)
    assert f"resuming from checkpoints/gru/last.pt: epoch {killed['epoch']}" in log
    assert f"step {killed['step']:,}" in log
    done = last_state(root)
    assert done["step"] == done["total_steps"] == 12 * 5
    rows = history_rows(root)
    assert len(rows) == done["n_rows"] == 12  # one row per epoch: none lost, none repeated
    # The epochs before the kill are kept as they were, not redone; the training clock carried
    # on from the killed run's (each epoch ends later than the one before it, across the kill).
    assert rows[: len(killed_rows)] == killed_rows
    times = [row["time_s"] for row in rows]
    assert times == sorted(times) and times[len(killed_rows)] > killed["elapsed_s"]
    meta = load_model(model).meta
    summary = json.loads((root / "dvclive/gru/metrics.json").read_text())
    assert meta["val/map3"] == summary["val/map3"] == max(r["val/map3"] for r in rows)


# ---------------------------------------------------------------- evaluate and predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo folder after every stage (tiny params, as the `params` fixture shrinks them)."""
    params = tiny_params()
    params["train"].update(epochs=1, threads=1)
    root = tmp_path_factory.mktemp("trained") / "repo"
    make_root(root, params)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        for stage in (download, preprocess, train, blend, evaluate, predict):
            stage.main([])
    finally:
        os.chdir(cwd)
    return root


OUTPUTS = {
    "blend": ["models/blend.npz", "metrics/blend.json"],
    "evaluate": [
        "reports/per_class.csv",
        "reports/confusion.json",
        "reports/confusions.json",
        "reports/gallery.png",
        "reports/curves.tsv",
        "metrics/evaluate.json",
    ],
    "predict": ["submissions/submission.csv", "metrics/predict.json"],
}
TIMINGS = ("time_s", "drawings_per_s")


def content(path: Path) -> object:
    """A file's content, with run timings left out of metrics (they differ run to run)."""
    if path.parent.name == "metrics" and path.read_bytes() != b"OLD":
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
    return path.read_bytes()


@pytest.mark.parametrize(("stage", "kill_at"), [("blend", 2), ("evaluate", 3), ("predict", 1)])
def test_killed_between_outputs_no_output_is_partial(
    trained: Path, tmp_path: Path, stage: str, kill_at: int
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(trained, root)
    install_hook(root)
    paths = [root / p for p in OUTPUTS[stage]]
    reference = {p: content(p) for p in paths}
    for p in paths:
        p.write_bytes(b"OLD")  # a previous run's outputs

    killed = run_stage(stage, root, KILL_AT_REPLACE=str(kill_at))
    assert killed.returncode == -signal.SIGKILL
    # Every output is the old one or the complete new one; exactly kill_at - 1 were committed.
    states = ["old" if p.read_bytes() == b"OLD" else "new" for p in paths]
    assert states.count("new") == kill_at - 1
    for p, state in zip(paths, states, strict=True):
        assert state == "old" or content(p) == reference[p], p

    finish(stage, root)
    assert {p: content(p) for p in paths} == reference
    if stage == "predict":
        classes = sorted(p.stem for p in (root / "data/raw/train_simplified").glob("*.csv"))
        validate_submission(paths[0], root / "data/raw/test_simplified.csv", classes)
