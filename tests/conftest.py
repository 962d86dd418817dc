"""Shared fixtures: the real-data folder, a tiny params set, a repo-like working folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO_DIR = Path(__file__).resolve().parents[1]
# Real Quick, Draw! data lives beside the repo (../shared/quickdraw), never inside it.
SHARED_QUICKDRAW = Path(
    os.environ.get("QUICKDRAW_SHARED", REPO_DIR.parent / "shared" / "quickdraw")
).resolve()


@pytest.fixture(scope="session")
def kaggle16_dir() -> Path:
    path = SHARED_QUICKDRAW / "kaggle16"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set QUICKDRAW_SHARED)")
    return path


@pytest.fixture(scope="session")
def ndjson345_dir() -> Path:
    path = SHARED_QUICKDRAW / "ndjson345"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set QUICKDRAW_SHARED)")
    return path


@pytest.fixture
def params() -> dict:
    """The repo's params, shrunk so a whole pipeline runs in seconds."""
    return tiny_params()


def tiny_params() -> dict:
    """The repo's params, shrunk so a whole pipeline runs in seconds (fresh dict each call)."""
    p = yaml.safe_load((REPO_DIR / "configs" / "params.yaml").read_text())
    p["download"].update(
        synthetic_classes=5, synthetic_train_per_class=60, synthetic_test_per_class=8
    )
    p["preprocess"].update(val_per_class=10, block_size=64, workers=1)
    p["train"].update(
        epochs=2,
        batch_size=32,
        hidden_size=16,
        num_layers=1,
        conv_channels=[8, 8],
        checkpoint_every_s=0,
        workers=0,
    )
    p["evaluate"].update(batch_size=64, gallery_size=4)
    p["predict"].update(batch_size=64)
    return p


@pytest.fixture
def workdir(tmp_path: Path, params: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out like the repo root (configs/params.yaml), made the cwd."""
    (tmp_path / "configs").mkdir()
    write_params(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(root: Path, params: dict) -> Path:
    path = root / "configs" / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
