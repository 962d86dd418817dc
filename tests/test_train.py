"""Training: learns, logs, keeps the best model, and resumes a killed run to the same weights."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import TrainConfig, from_dict
from pipeline.data import TrainBatches, shard_blocks
from pipeline.features import Augment
from pipeline.inference import load_checkpoint
from pipeline.store import Drawings, SplitWriter, create_store
from pipeline.train import lr_at, main, run


def polygon_drawings(n_classes: int, per_class: int, seed: int) -> Drawings:
    """Class c is a jittered polygon with c + 3 corners, randomly placed: easy but not trivial."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for i in range(n_classes * per_class):
        c = i % n_classes
        corners = c + 3
        angle = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, corners + 1)
        radius, centre = rng.uniform(30, 100), rng.uniform(100, 156, 2)
        xs = np.clip(centre[0] + radius * np.cos(angle) + rng.normal(0, 3, corners + 1), 0, 255)
        ys = np.clip(centre[1] + radius * np.sin(angle) + rng.normal(0, 3, corners + 1), 0, 255)
        items.append([(xs.astype(int).tolist(), ys.astype(int).tolist())])
        labels.append(c)
    return Drawings.from_strokes(items, labels)


def make_store(path: Path, n_classes: int = 4, per_class: int = 40, block_size: int = 32) -> Path:
    root = create_store(path, [f"shape{c}" for c in range(n_classes)], {"counts": {}, "params": {}})
    for split, n, seed in (("train", per_class, 0), ("val", per_class // 4, 1)):
        writer = SplitWriter(root, split, block_size)
        writer.append(polygon_drawings(n_classes, n, seed))
        writer.close()
    return path


def train_config(params: dict, **changes: object) -> TrainConfig:
    raw = params["train"] | {"time_budget_s": 0, "threads": 1, "shuffle_buffer_blocks": 2}
    return dataclasses.replace(from_dict(TrainConfig, raw, "train"), **changes)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return make_store(tmp_path / "drawings.zarr")


def final_weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint_dir / "last.pt", weights_only=True)["model"]


def test_lr_warms_up_then_decays_to_near_zero() -> None:
    assert lr_at(0.0, 1.0) == pytest.approx(0.1)
    assert lr_at(0.05, 1.0) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0) == pytest.approx(0.002)
    assert lr_at(0.5, 1.0) < lr_at(0.3, 1.0)


def test_batches_cover_the_shard_once_bucketed_and_differ_by_epoch(store_path: Path) -> None:
    data = TrainBatches(store_path, "train", [0, 1, 2, 3, 4], 16, 2, 64, None, seed=0)
    data.set_epoch(0)
    epoch0 = list(data)
    assert len(epoch0) == data.n_batches(0)
    labels = torch.cat([y for _, _, y in epoch0])
    assert len(labels) == 160  # 5 blocks of 32: each drawing once
    data.set_epoch(1)
    assert not torch.equal(labels, torch.cat([y for _, _, y in data]))
    # Skipping k batches (resume) yields exactly the rest of the epoch.
    data.set_epoch(0, skip=3)
    rest = list(data)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, epoch0[3:], strict=True))


def test_augmented_batches_are_the_same_whatever_the_worker_count(store_path: Path) -> None:
    from pipeline.data import make_loader

    aug = Augment(scale=0.1, rotate_deg=10, stroke_dropout=0.2)
    data = TrainBatches(store_path, "train", [0, 1, 2], 16, 2, 64, aug, seed=0)
    one = [x for x, _, _ in make_loader(data, 0, False)]
    two = [x for x, _, _ in make_loader(data, 2, False)]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


def test_shards_split_blocks_between_ranks() -> None:
    assert shard_blocks(5, 0, 2) == [0, 2, 4] and shard_blocks(5, 1, 2) == [1, 3]
    assert shard_blocks(1, 1, 2) == [0]  # too few blocks: ranks share


def test_training_learns_and_exports_the_best_model(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    cfg = train_config(params, epochs=6, learning_rate=0.01)
    result = run(cfg, store_path, tmp_path / "model.pt", tmp_path / "ckpt", tmp_path / "live")
    history = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["state"]["history"]
    assert history[-1]["train/loss"] < history[0]["train/loss"] * 0.8
    assert result.summary["val/map3"] == max(row["val/map3"] for row in history)
    assert result.summary["val/map3"] > 0.6  # 4 shapes; chance is ~0.46
    _, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["classes"] == ["shape0", "shape1", "shape2", "shape3"]
    assert meta["val/map3"] == result.summary["val/map3"]
    # dvclive: curves per epoch, a summary of the best checkpoint, and no dvc.yaml of its own.
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["val/map3"] == result.summary["val/map3"]
    for name in ("train/loss", "val/loss", "val/map3", "val/top1", "lr", "train/samples_per_s"):
        assert (tmp_path / "live" / "plots" / "metrics" / f"{name}.tsv").is_file(), name
    assert not (tmp_path / "live" / "dvc.yaml").exists()


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    cfg = train_config(params, epochs=2)
    torch.use_deterministic_algorithms(True)
    try:
        run(cfg, store_path, tmp_path / "a.pt", tmp_path / "a", None)
        # "Killed" after 7 steps (mid-epoch: 5 batches per epoch), then run again.
        run(cfg, store_path, tmp_path / "b.pt", tmp_path / "b", None, stop_after_steps=7)
        assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state"]["step"] == 7
        run(cfg, store_path, tmp_path / "b.pt", tmp_path / "b", None)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_checkpoint_from_other_params_is_ignored(
    store_path: Path, tmp_path: Path, params: dict, caplog: pytest.LogCaptureFixture
) -> None:
    run(train_config(params, epochs=1), store_path, tmp_path / "m.pt", tmp_path / "c", None,
        stop_after_steps=2)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="pipeline.train"):
        run(train_config(params, epochs=1, hidden_size=8), store_path, tmp_path / "m.pt",
            tmp_path / "c", None)  # fmt: skip
    assert "other params or data; starting fresh" in caplog.text
    assert "resuming" not in caplog.text


def test_stage_runs_from_the_repo_root_with_default_paths(workdir: Path, params: dict) -> None:
    from tests.conftest import write_params

    params["train"] |= {"epochs": 1, "threads": 1}
    write_params(workdir, params)
    make_store(workdir / "data" / "processed" / "drawings.zarr")
    main([])
    assert (workdir / "models" / "model.pt").is_file()
    assert (workdir / "checkpoints" / "last.pt").is_file()
    assert (workdir / "dvclive" / "metrics.json").is_file()


def test_missing_store_says_what_to_do(workdir: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
