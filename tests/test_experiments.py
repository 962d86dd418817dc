"""The experiment loop, with the real `dvc` in a clean clone: experiments keep their metrics and
curves, DVC compares them, and applying one restores it without training again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clone_repo, write_params

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture
def repo(tmp_path: Path, params: dict) -> Path:
    """A clone with the tiny params and a committed baseline (as the repo commits its own)."""
    root = clone_repo(tmp_path / "clone")
    write_params(root, params)
    subprocess.run([*GIT, "commit", "-qam", "tiny params"], cwd=root, check=True)
    dvc(root, "repro")
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "baseline"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str) -> str:
    """Run dvc; its output (stdout, and stderr unless `--json` asks for a document)."""
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed to load" not in done.stderr, done.stderr  # every metric and plot loads
    return done.stdout if "--json" in args else done.stdout + done.stderr


def experiments(shown: list[dict]) -> dict[str, dict]:
    """{experiment name: its `data`} from `dvc exp show --json`."""
    return {
        rev["name"]: rev["data"]
        for commit in shown
        for exp in commit.get("experiments") or []
        for rev in exp["revs"]
    }


@pytest.mark.slow
def test_experiments_keep_and_compare_their_results(repo: Path) -> None:
    names = []
    for seed in (1, 2):
        out = dvc(repo, "exp", "run", "-S", f"train.seed={seed}")  # no file prefix needed
        assert "Running stage 'download'" not in out  # only what the seed touches reruns
        assert "Running stage 'preprocess'" not in out
        for stage in ("train@gru", "blend", "evaluate", "predict"):
            assert f"Running stage '{stage}'" in out, stage
        names.append(out.split("Ran experiment(s): ")[1].split()[0])
    shown = experiments(json.loads(dvc(repo, "exp", "show", "--json")))
    for name, seed in zip(names, (1, 2), strict=True):
        data = shown[name]
        assert data["params"]["params.yaml"]["data"]["train"]["seed"] == seed
        for path, key in (
            ("metrics/evaluate.json", "val/map3"),
            ("dvclive/gru/metrics.json", "val/map3"),
            ("metrics/blend.json", "blend/gru/map3"),
            ("metrics/predict.json", "test/map3"),
        ):
            value = data["metrics"][path]["data"][key]
            assert 0 <= value <= 1, (name, path)

    diff = json.loads(dvc(repo, "metrics", "diff", names[0], names[1], "--json"))
    val = diff["metrics/evaluate.json"]["val/map3"]
    assert val["old"] == shown[names[0]]["metrics"]["metrics/evaluate.json"]["data"]["val/map3"]
    assert val["new"] == shown[names[1]]["metrics"]["metrics/evaluate.json"]["data"]["val/map3"]

    plots = json.loads(dvc(repo, "plots", "diff", names[0], names[1], "--json"))["data"]
    loss = plots["Loss, train and val"][0]
    assert loss["revisions"] == names
    points = loss["content"]["data"]["values"]
    assert {p["rev"] for p in points} == set(names)
    assert {p["field"] for p in points} == {"train_loss", "val_loss"}  # one chart, both losses
    assert "reports/confusion.json" in plots and "reports/gallery.png" in plots

    # Back to the first experiment: DVC restores its model, reports and submission from the
    # cache and git; nothing is trained, evaluated or predicted again.
    dvc(repo, "exp", "apply", names[0])
    out = dvc(repo, "repro")
    assert "Running stage" not in out, out
    for stage in ("download", "preprocess", "train@gru", "blend", "evaluate", "predict"):
        assert f"Stage '{stage}' didn't change" in out
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert metrics["val/map3"] == val["old"]


@pytest.mark.slow
def test_the_compare_table_leads_with_the_scores(repo: Path) -> None:
    dvc(repo, "exp", "run", "-S", "train.seed=3")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.compare"],
        cwd=repo,
        text=True,
        capture_output=True,
        env=os.environ | {"PATH": str(Path(sys.executable).parent) + ":" + os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["experiment", "val/map3", "val/top1", "test/map3"]
    assert header.split()[-1] == "train.seed"  # the only param that differs
    assert len(rows) == 3  # the workspace, the baseline commit, the experiment
    assert header.split()[5:7] == ["train", "s"]  # every member's training seconds, summed
    assert all(float(row.split()[5]) > 0 for row in rows)
