"""The experiment loop, with the real `dvc` in a clean clone: experiments keep their metrics and
curves, DVC compares them, and applying one restores it without training again; the compare
table (`make compare`) leads with the scores and shows an experiment that did not finish as such,
never with its baseline's scores. (Queued sweeps: test_queue.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.compare import exp_rows, render, table
from tests.conftest import clone_repo, write_params
from tests.dvc_helpers import commit, dvc


@pytest.fixture
def repo(tmp_path: Path, params: dict) -> Path:
    """A clone with the tiny params and a committed baseline (as the repo commits its own)."""
    root = clone_repo(tmp_path / "clone")
    write_params(root, params)
    commit(root, "tiny params")
    dvc(root, "repro")
    commit(root, "baseline")
    return root


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


# ---------------------------------------------------------------- the compare table


def shown_rev(name: str, val: float | None, seed: int, error: bool = False) -> dict:
    """One revision as `dvc exp show --json` gives it (the fields compare reads)."""
    metrics = {} if val is None else {"metrics/evaluate.json": {"data": {"val/map3": val}}}
    metrics["dvclive/gru/metrics.json"] = {"data": {"time_s": 2.5}}
    return {
        "rev": f"{seed:040d}",
        "name": name,
        "data": {
            "metrics": metrics,
            "params": {"params.yaml": {"data": {"train": {"seed": seed, "epochs": 2}}}},
        },
        "error": {"msg": "Experiment run failed", "type": ""} if error else None,
    }


def shown(*experiments: tuple[dict, str | None]) -> list[dict]:
    """`dvc exp show --json`: the workspace, one commit (val/map3 0.5) and its experiments,
    each with its executor's state (None once DVC has collected it)."""
    base = shown_rev("master", 0.5, 0)
    return [
        {**shown_rev("workspace", 0.5, 0), "rev": "workspace", "name": None},
        base
        | {
            "experiments": [
                {
                    "name": rev["name"],
                    "revs": [rev],
                    "executor": None if state is None else {"state": state, "local": {}},
                }
                for rev, state in experiments
            ]
        },
    ]


def test_the_compare_table_leads_with_the_scores_best_first() -> None:
    rows = exp_rows(shown((shown_rev("low", 0.25, 1), None), (shown_rev("high", 0.75, 2), None)))
    header, body = table(rows)
    assert header[:6] == [
        "experiment",
        "val/map3",
        "val/top1",
        "test/map3",
        "leaderboard",
        "train s",
    ]
    assert header[6:] == ["train.seed"]  # the only param that differs; epochs is left out
    assert [(r[0], r[1]) for r in body] == [
        ("workspace", "0.5000"),
        ("master", "0.5000"),
        ("  high", "0.7500"),
        ("  low", "0.2500"),
    ]
    assert all(r[5] == "2.5000" for r in body)  # every member's training seconds, summed
    lines = render(header, body, markdown=True).splitlines()
    assert lines[0].startswith("| experiment | val/map3") and len(lines) == 2 + len(body)


def test_a_failed_queued_or_running_experiment_has_no_scores() -> None:
    # DVC shows a failed experiment with its baseline's metrics, marked by an error; queued
    # and running ones with the baseline's too. None of them is a result.
    rows = exp_rows(
        shown(
            (shown_rev("broke", 0.5, 3, error=True), "failed"),
            (shown_rev("fine", 0.25, 1), None),
            (shown_rev("waits", 0.5, 4), "queued"),
            (shown_rev("busy", 0.5, 5), "running"),
            (shown_rev("lost", 0.5, 6, error=True), None),
        )
    )
    header, body = table(rows)
    cells = {r[0].strip(): r for r in body}
    assert list(cells)[2:] == [
        "fine",
        "broke (failed)",
        "waits (queued)",
        "busy (running)",
        "lost (failed)",
    ]
    for name in ("broke (failed)", "waits (queued)", "busy (running)", "lost (failed)"):
        assert cells[name][1:6] == ["-"] * 5, name  # no scores, no training time
    assert cells["broke (failed)"][header.index("train.seed")] == "3"  # what it tried
    assert cells["fine"][1] == "0.2500"
