"""Sharing a trained run (README "Sharing a trained ensemble", docs/sharing.md): `dvc push` to a
directory remote from one clone, `git clone` + `dvc pull` in another, and the data, the members,
the blend and the submission are back without training: `dvc status` is clean, `dvc repro` runs
nothing, predict and the submission check work. On the way, DVC links outputs from its cache
instead of copying them (`cache.type` in .dvc/config), and a stage that rewrites a linked output
replaces the link (temp file + rename) instead of writing through it into the cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_params, write_params
from tests.dvc_helpers import cache_object, commit, corrupt_cache_objects, dvc, fresh_clone, python


def locked_outs(root: Path) -> dict[str, str]:
    """{path: md5} of every output dvc.lock records."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


def reflinks(folder: Path) -> bool:
    """Whether this file system makes copy-on-write clones (DVC's first choice: a new inode)."""
    from dvc_objects.fs.system import reflink

    a, b = folder / ".reflink-a", folder / ".reflink-b"
    a.write_bytes(b"x")
    try:
        reflink(str(a), str(b))
        return True
    except OSError:
        return False
    finally:
        a.unlink()
        b.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_pushed_run_pulls_into_a_fresh_clone_and_needs_no_training(tmp_path: Path) -> None:
    params = tiny_params()
    origin = fresh_clone(tmp_path / "origin")
    write_params(origin, params)
    commit(origin, "tiny params")
    dvc(origin, "repro")
    commit(origin, "baseline")
    dvc(origin, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    commit(origin, "a directory remote", ".dvc/config")
    dvc(origin, "push")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    assert not (clone / "models").exists() and not (clone / "data" / "raw").exists()
    dvc(clone, "pull")
    members = params["ensemble"]["members"]
    shared = [
        "data/raw/test_simplified.csv",
        "data/processed/drawings.zarr",
        *[f"models/members/{m}/model.pt" for m in members],
        "models/blend.npz",
        "submissions/submission.csv",
    ]
    for path in shared:
        assert (clone / path).exists(), path
    for path in ("models/blend.npz", "submissions/submission.csv"):
        assert (clone / path).read_bytes() == (origin / path).read_bytes(), path
    assert "Data and pipelines are up to date" in dvc(clone, "status")
    out = dvc(clone, "repro")
    assert "Running stage" not in out, out
    for stage in ("download", "preprocess", *[f"train@{m}" for m in members], "predict"):
        assert f"Stage '{stage}' didn't change" in out, stage
    assert not (clone / "checkpoints").exists()  # nothing was trained here

    # Pulled outputs are the cache's objects, linked (read-only), not second copies.
    outs = locked_outs(clone)
    model = clone / f"models/members/{members[0]}/model.pt"
    model_object = cache_object(clone, outs[f"models/members/{members[0]}/model.pt"])
    if not reflinks(clone):
        assert model.samefile(model_object)
        assert model.stat().st_mode & 0o222 == 0

    # Predict again and check the submission (no upload: there is no network here).
    submission = clone / "submissions" / "submission.csv"
    before = submission.read_bytes()
    python(clone, "-m", "pipeline.predict")
    assert submission.read_bytes() == before
    assert not submission.samefile(cache_object(clone, outs["submissions/submission.csv"]))
    out = python(clone, "-m", "pipeline.submit", "--dry-run")
    assert "valid (dry run, not submitted)" in out
    assert corrupt_cache_objects(clone) == []  # rewriting a linked output left the cache as is
    assert os.access(model_object, os.F_OK)
