"""Queued experiments (`dvc exp run --queue`, `dvc queue start`) run in a copy of the repo under
`.dvc/tmp/exps/`; a relative `download.path` beside the repo still means the same folder there,
for the stage (DVC_ROOT) and for DVC's own check of the stage's dep (a link under
`.dvc/tmp/exps/`). The slow test runs the README's sweep with the real DVC queue."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import pytest

from pipeline import download
from pipeline.common.config import DownloadConfig, from_dict
from pipeline.common.paths import Paths
from pipeline.sources.synthetic import write_synthetic
from tests.conftest import tiny_params, write_params
from tests.dvc_helpers import commit, dvc, fresh_clone, python, stop_queue, wait_for_queue


def config(**changes: object) -> DownloadConfig:
    return dataclasses.replace(from_dict(DownloadConfig, tiny_params()["download"]), **changes)


@pytest.fixture
def beside(tmp_path: Path) -> tuple[Path, Path]:
    """A repo (just its `.dvc/`) and a Kaggle-layout folder beside it, `../shared/k`."""
    root, source = tmp_path / "repo", tmp_path / "shared" / "k"
    (root / ".dvc").mkdir(parents=True)
    source.mkdir(parents=True)
    write_synthetic(source, 3, 4, 2, seed=0)
    return root, source


def copy_dir(root: Path, *parts: str) -> Path:
    """Where DVC makes a queued run's copy of the repo (`--temp`: one level deeper)."""
    path = root.joinpath(".dvc", "tmp", "exps", *parts, "tmpq1w2e3r4")
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- the stage, in the copy


def test_the_stage_reads_a_relative_path_from_the_original_repo_in_a_queued_run(
    beside: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, source = beside
    copy = copy_dir(root)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(root))  # what DVC sets in a queued run's stages
    assert download.source_dir(config(source="local", path="../shared/k")) == source
    metrics = download.run(config(source="local", path="../shared/k"), Paths.under("."))
    assert (metrics["train/files"], metrics["test/rows"]) == (3, 6)
    assert len(list((copy / "data/raw/train_simplified").glob("*.csv"))) == 3


def test_dvc_root_counts_only_for_the_repo_itself_and_its_copies(
    beside: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = beside
    monkeypatch.setenv("DVC_ROOT", str(root))
    for cwd, expected in ((root, root), (copy_dir(root, "standalone"), root)):
        monkeypatch.chdir(cwd)
        assert download.repo_root() == expected
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a stale DVC_ROOT in the shell: the cwd, as without DVC
    assert download.repo_root() == elsewhere
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.chdir(root)
    assert download.repo_root() == root


# ---------------------------------------------------------------- DVC's own check of the dep


def test_links_lead_dvc_from_a_copy_to_the_folder_beside_the_repo(
    beside: tuple[Path, Path],
) -> None:
    root, source = beside
    made = download.queue_links(root, "../shared/k")
    exps = root / ".dvc" / "tmp" / "exps"
    assert made == [exps / "shared", exps / "standalone" / "shared"]
    assert os.readlink(exps / "shared") == "../../../../shared"  # relative: moves with both
    for parts in ((), ("standalone",)):
        copy = copy_dir(root, *parts)
        # DVC joins the dep to the copy's root and normalises the path as text: this is the
        # path it hashes before the stage runs.
        seen = Path(os.path.normpath(copy / "../shared/k"))
        assert seen.is_dir() and seen.samefile(source)
    assert download.queue_links(root, "../shared/k") == []  # already there: nothing to do


def test_links_are_only_for_paths_beside_the_repo_and_never_take_dvcs_names(
    beside: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    root, _ = beside
    for path in ("data/source", "/abs/path", "../../far/away", ".."):
        assert download.queue_links(root, path) == [], path
    with caplog.at_level(logging.WARNING):
        assert download.queue_links(root, "../cache/k") == []  # DVC's own exps/cache
    assert "absolute path" in caplog.text
    exps = root / ".dvc" / "tmp" / "exps"
    assert not (exps / "cache").exists()
    (exps / "shared").mkdir(parents=True)  # not a link: someone else's, left alone
    assert download.queue_links(root, "../shared/k") == [exps / "standalone" / "shared"]
    assert not (exps / "shared").is_symlink()
    os.symlink("elsewhere", exps / "other")  # a stale link of ours: pointed at the folder
    assert download.queue_links(root, "../other/x") == [exps / "other", exps / "standalone/other"]
    assert os.readlink(exps / "other") == "../../../../other"
    assert download.queue_links(root.parent / "no-dvc-here", "../shared/k") == []


def test_queue_links_command_links_the_params_and_presets_paths(
    beside: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root, _ = beside
    params = tiny_params()
    params["download"]["path"] = "../shared/k"
    write_params(root, params)
    (root / "configs").mkdir()
    (root / "configs" / "real.yaml").write_text("download:\n  path: ../data16/kaggle16\n")
    (root / "configs" / "tiny.yaml").write_text("train:\n  epochs: 1\n")
    monkeypatch.chdir(root)
    download.main(["--queue-links"])
    exps = root / ".dvc" / "tmp" / "exps"
    assert sorted(p.name for p in exps.iterdir() if p.is_symlink()) == ["data16", "shared"]
    assert "4 link(s) made" in capsys.readouterr().out
    download.main(["--queue-links", "../more/x"])
    assert (exps / "more").is_symlink()
    capsys.readouterr()
    monkeypatch.chdir(root.parent)
    with pytest.raises(SystemExit) as exit_info:
        download.main(["--queue-links"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "not a DVC repo" in err


# ---------------------------------------------------------------- the README's sweep, for real


@pytest.mark.slow
def test_a_queued_sweep_from_a_relative_source_path_is_ranked_and_a_failure_shows(
    tmp_path: Path,
) -> None:
    """README "Experiments": a baseline on a folder beside the repo, then a learning-rate grid
    and one bad value queued, `dvc queue start`, `dvc queue logs`, `python -m pipeline.compare`."""
    source = tmp_path / "shared" / "k"
    source.mkdir(parents=True)
    write_synthetic(source, 5, 60, 8, seed=0)
    root = fresh_clone(tmp_path / "clone")
    params = tiny_params()
    params["download"].update(source="local", path="../shared/k")
    write_params(root, params)
    commit(root, "the folder beside the repo")
    out = dvc(root, "repro")
    assert "linked for DVC's queued runs" in out
    commit(root, "baseline")
    for csv in source.rglob("*.csv"):  # DVC's cache linked data/raw, never the source's files
        assert (csv.stat().st_nlink, csv.stat().st_mode & 0o777) == (1, 0o644), csv

    try:
        grid = dvc(root, "exp", "run", "--queue", "-S", "train.learning_rate=0.001,0.01")
        bad = dvc(root, "exp", "run", "--queue", "-S", "train.learning_rate=-1")
        names = re.findall(r"Queued experiment '([^']+)'", grid)
        (failing,) = re.findall(r"Queued experiment '([^']+)'", bad)
        assert len(names) == 2, grid
        dvc(root, "queue", "start")
        status = wait_for_queue(root)
        for name in names:
            assert re.search(rf"{name}\s.*Success", status), status
        assert re.search(rf"{failing}\s.*Failed", status), status
        logs = dvc(root, "queue", "logs", failing)
        assert "error: param 'train.learning_rate' must be > 0" in logs
    finally:
        stop_queue(root)

    header, *rows = python(root, "-m", "pipeline.compare").splitlines()
    assert len(rows) == 5  # the workspace, the baseline commit, the three experiments
    assert header.split()[:4] == ["experiment", "val/map3", "val/top1", "test/map3"]
    assert header.split()[-1] == "train.learning_rate"  # the only param that differs
    cells = [row.split() for row in rows]
    assert [c[0] for c in cells[:2]] == ["workspace", "master"]
    ranked = cells[2:4]
    assert {c[0] for c in ranked} == set(names)
    scores = [float(c[1]) for c in ranked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert {c[-1] for c in ranked} == {"0.0010", "0.0100"}
    assert cells[4][:2] == [failing, "(failed)"] and cells[4][2:7] == ["-"] * 5
    assert cells[4][-1] == "-1"
