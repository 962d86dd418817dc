"""Training: learns, logs, keeps the best model, and resumes a killed run to the same weights."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.common.paths import Paths
from pipeline.core.encoders import PointsEncoder
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.models.predictor import member_proba
from pipeline.train import main, run
from pipeline.training.batches import TrainBatches, balanced_draw, make_loader, shard_blocks
from pipeline.training.schedule import budget_steps, lr_at
from tests.conftest import (
    make_polygon_store,
    member_config,
    polygon_drawings,
    reference_scores,
    reference_top_k,
    write_params,
    write_store,
)

POINTS = PointsEncoder(64)  # per-point features of at most 64 points


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return make_polygon_store(tmp_path / "drawings.zarr")


def run_paths(root: Path, store_path: Path, member: str = "gru") -> Paths:
    """Member `member`'s layout under `root` (as `train@<member>` writes it), reading the store
    at `store_path`."""
    return dataclasses.replace(Paths.under(root), processed_dir=store_path.parent).for_member(
        member
    )


def final_weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint_dir / "last.pt", weights_only=True)["model"]


def history(paths: Paths) -> list[dict[str, float]]:
    """The validation rows of a run (checkpoints/<member>/history.jsonl)."""
    text = (paths.checkpoint_dir / "history.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_lr_warms_up_then_decays_to_near_zero() -> None:
    # Linear from peak/10 over the first 5% of the run, then a cosine down to peak/500.
    assert lr_at(0.0, 1.0) == pytest.approx(0.1)
    assert lr_at(0.025, 1.0) == pytest.approx(0.55)  # halfway through the warm-up
    assert lr_at(0.05, 1.0) == pytest.approx(1.0)
    assert lr_at(0.525, 1.0) == pytest.approx((1.0 + 0.002) / 2)  # halfway through the decay
    assert lr_at(1.0, 1.0) == pytest.approx(0.002)
    assert lr_at(0.5, 1.0) < lr_at(0.3, 1.0)
    assert lr_at(0.025, 3e-3) == pytest.approx(0.55 * 3e-3)  # scales with the peak


@pytest.mark.parametrize(
    ("step", "elapsed_s", "budget_s", "expected"),
    [
        (10, 5.0, 60.0, 120),  # 2 steps/s for 60 s
        (10, 5.0, 36000.0, 72_000),  # the budget alone decides: no epochs cap
        (10, 70.0, 60.0, 10),  # budget spent: stop now
        (10, 5.0, 5.5, 11),
    ],
)
def test_budget_steps_fit_the_budget_at_the_measured_rate(
    step: int, elapsed_s: float, budget_s: float, expected: int
) -> None:
    assert budget_steps(step, elapsed_s, budget_s) == expected


def test_batches_cover_the_shard_once_bucketed_and_differ_by_epoch(store_path: Path) -> None:
    data = TrainBatches(store_path, "train", [0, 1, 2, 3, 4], 16, 2, POINTS, None, seed=0)
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
    aug = Augment(scale=0.1, rotate_deg=10, stroke_dropout=0.2)
    data = TrainBatches(store_path, "train", [0, 1, 2], 16, 2, POINTS, aug, seed=0)
    one = [x for x, _, _ in make_loader(data, 0, False)]
    two = [x for x, _, _ in make_loader(data, 2, False)]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@pytest.mark.parametrize(("power", "share"), [(0.0, 0.1), (0.5, 0.25), (1.0, 0.5)])
def test_class_balance_draws_a_class_as_often_as_its_power_says(power: float, share: float) -> None:
    # 1,000 drawings of class 0, 9,000 of class 1. A class's share of the draw is
    # n ** (1 - power) / sum: power 0.5 gives sqrt(1,000) / (sqrt(1,000) + sqrt(9,000)) = 1/4.
    labels = np.repeat([0, 1], [1_000, 9_000])
    drawn = balanced_draw(labels, power, np.random.default_rng(0))
    assert len(drawn) == 10_000 and drawn.min() >= 0 and drawn.max() < 10_000
    assert (labels[drawn] == 0).mean() == pytest.approx(share, abs=0.015)  # 1.5 sd at most


def test_a_balanced_epoch_is_as_long_and_draws_the_rare_class_as_often(tmp_path: Path) -> None:
    # 20 triangles against 140 squares: 160 drawings, 10 blocks of 16.
    both = polygon_drawings(2, 140, 0)
    keep = np.flatnonzero((both.labels == 1) | (np.arange(len(both)) < 40))
    store = write_store(tmp_path / "s.zarr", ["triangle", "square"], {"train": both.take(keep)})
    blocks = list(range(10))
    plain = TrainBatches(store, "train", blocks, 16, 10, POINTS, None, seed=0)
    plain.set_epoch(0)
    assert torch.cat([y for _, _, y in plain]).bincount().tolist() == [20, 140]

    aug = Augment(scale=0.1, stroke_dropout=0.2)
    data = TrainBatches(store, "train", blocks, 16, 10, POINTS, aug, seed=0, class_balance=1.0)
    epochs = []
    for epoch in (0, 1):
        data.set_epoch(epoch)
        batches = list(make_loader(data, 0, False))
        assert len(batches) == data.n_batches(epoch) == plain.n_batches(epoch) == 10
        epochs.append(torch.cat([y for _, _, y in batches]))
    assert len(epochs[0]) == 160
    assert 60 <= (epochs[0] == 0).sum() <= 100  # 80 expected (sd 6.3), not 20
    assert not torch.equal(epochs[0], epochs[1])
    # the same epoch whatever the loader's worker count
    data.set_epoch(1)
    two = [y for _, _, y in make_loader(data, 2, False)]
    assert torch.equal(torch.cat(two), epochs[1])


def test_shards_split_blocks_between_ranks() -> None:
    assert shard_blocks(5, 0, 2) == [0, 2, 4] and shard_blocks(5, 1, 2) == [1, 3]
    assert shard_blocks(1, 1, 2) == [0]  # too few blocks: ranks share


def test_training_learns_and_exports_the_best_model(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    cfg = member_config(params, epochs=6, learning_rate=0.01)
    paths = run_paths(tmp_path, store_path)
    result = run(cfg, paths)
    rows = history(paths)
    assert rows[-1]["train/loss"] < rows[0]["train/loss"] * 0.8
    assert result.summary["val/map3"] == max(row["val/map3"] for row in rows)
    assert result.summary["val/map3"] > 0.6  # 4 shapes; chance is ~0.46
    meta = load_model(paths.model_path).meta
    assert meta["classes"] == ["shape0", "shape1", "shape2", "shape3"]
    assert meta["val/map3"] == result.summary["val/map3"]
    # dvclive: curves per epoch, a summary of the best checkpoint, and no dvc.yaml of its own.
    metrics = json.loads((paths.live_dir / "metrics.json").read_text())
    assert metrics["val/map3"] == result.summary["val/map3"]
    # The curves DVC plots: one row per validation (here per epoch), the columns dvc.yaml draws.
    rows = [r.split("\t") for r in (paths.live_dir / "curves.tsv").read_text().splitlines()]
    assert rows[0] == [
        "step",
        "time_s",
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "val_map3",
        "val_top1",
        "samples_per_s",
    ]
    assert [float(r[2]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert [float(r[6]) for r in rows[1:]] == pytest.approx(
        [h["val/map3"] for h in history(paths)], rel=1e-5
    )
    assert not (paths.live_dir / "dvc.yaml").exists()


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    cfg = member_config(params, epochs=2)
    torch.use_deterministic_algorithms(True)
    try:
        a, b = run_paths(tmp_path / "a", store_path), run_paths(tmp_path / "b", store_path)
        run(cfg, a, log_live=False)
        # "Killed" after 7 steps (mid-epoch: 5 batches per epoch), then run again.
        run(cfg, b, stop_after_steps=7, log_live=False)
        last = torch.load(b.checkpoint_dir / "last.pt", weights_only=True)
        assert last["state"]["step"] == 7
        # Mark the killed run's training clock: a resumed run carries it on, not from zero.
        last["state"]["elapsed_s"] += 1e6
        torch.save(last, b.checkpoint_dir / "last.pt")
        run(cfg, b, log_live=False)
    finally:
        torch.use_deterministic_algorithms(False)
    resumed = torch.load(b.checkpoint_dir / "last.pt", weights_only=True)["state"]
    assert resumed["step"] == 10 and resumed["n_rows"] == len(history(b)) == 2
    assert resumed["elapsed_s"] > last["state"]["elapsed_s"]
    assert history(b)[-1]["time_s"] > 1e6  # the epoch ended after the killed run's time
    assert [r["val/map3"] for r in history(a)] == [r["val/map3"] for r in history(b)]
    a, b = final_weights(a.checkpoint_dir), final_weights(b.checkpoint_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_checkpoint_from_other_params_is_ignored(
    store_path: Path, tmp_path: Path, params: dict, caplog: pytest.LogCaptureFixture
) -> None:
    paths = run_paths(tmp_path, store_path)
    run(member_config(params, epochs=1), paths, stop_after_steps=2, log_live=False)
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        run(member_config(params, epochs=1, hidden_size=8), paths, log_live=False)  # a model key
    assert "other params or data; starting fresh" in caplog.text
    assert "resuming" not in caplog.text


def test_stage_runs_from_the_repo_root_with_default_paths(workdir: Path, params: dict) -> None:
    params["train"] |= {"epochs": 1, "threads": 1}
    write_params(workdir, params)
    make_polygon_store(workdir / "data" / "processed" / "drawings.zarr")
    main(["--member", "gru"])  # as `dvc repro train@gru` runs it
    # One epoch of 160 drawings in batches of 32: 5 steps, the exported model the one logged.
    meta = load_model(workdir / "models" / "members" / "gru" / "model.pt").meta
    assert meta["classes"] == ["shape0", "shape1", "shape2", "shape3"]
    state = torch.load(workdir / "checkpoints" / "gru" / "last.pt", weights_only=True)["state"]
    assert state["step"] == state["total_steps"] == 5 and state["finished"]
    summary = json.loads((workdir / "dvclive" / "gru" / "metrics.json").read_text())
    assert summary["val/map3"] == meta["val/map3"] and summary["steps"] == 5
    assert not (workdir / "models" / "model.pt").exists()  # nothing outside the member's places


def test_without_a_member_every_member_is_trained_with_its_own_params(
    workdir: Path, params: dict
) -> None:
    # `python -m pipeline.train`: each of ensemble.members in turn, `members.<name>` on top of
    # `train` (a member named after no family says which it is).
    params["train"] |= {"epochs": 1, "threads": 1}
    params["ensemble"]["members"] = ["gru", "small"]
    params["members"]["small"] = params["members"]["bilstm"] | {"batch_size": 16, "hidden_size": 8}
    write_params(workdir, params)
    make_polygon_store(workdir / "data" / "processed" / "drawings.zarr")
    main([])
    steps = {"gru": 5, "small": 10}  # 160 drawings in batches of 32, and of 16
    for member, model in (("gru", "gru"), ("small", "bilstm")):
        meta = load_model(workdir / "models" / "members" / member / "model.pt").meta
        assert meta["model"] == model
        state = torch.load(workdir / "checkpoints" / member / "last.pt", weights_only=True)["state"]
        assert state["step"] == steps[member], member
        assert (workdir / "dvclive" / member / "curves.tsv").is_file()
    assert meta["model_cfg"]["hidden_size"] == 8  # the small member's own size
    gru_meta = load_model(workdir / "models" / "members" / "gru" / "model.pt").meta
    assert gru_meta["model_cfg"]["hidden_size"] == params["members"]["gru"]["hidden_size"]


def test_a_member_not_in_the_ensemble_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--member", "bilstm"])  # tiny params: ensemble.members is [gru]
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "'bilstm' is not in ensemble.members (gru)" in err


def test_validation_runs_at_its_step_cadence_and_at_the_end(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    # 2 epochs of 5 batches, a validation every 3 steps: rows at 3, 6, 9 and the end (10).
    cfg = member_config(params, epochs=2, val_every_steps=3)
    paths = run_paths(tmp_path, store_path)
    result = run(cfg, paths)
    rows = (paths.live_dir / "curves.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:3] == ["step", "time_s", "epoch"]
    steps = [int(r.split("\t")[0]) for r in rows[1:]]
    assert steps == [3, 6, 9, 10]
    epochs = [float(r.split("\t")[2]) for r in rows[1:]]
    assert epochs == [0.6, 1.2, 1.8, 2.0]
    best = max(history(paths), key=lambda r: r["val/map3"])
    assert result.summary["best/step"] == best["step"]  # the best is chosen at that cadence too


def test_a_time_budget_alone_decides_the_length(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    # One epoch would take a fraction of a second; 3 s of budget runs many more than `epochs`.
    cfg = member_config(params, epochs=1, time_budget_s=3.0)
    result = run(cfg, run_paths(tmp_path, store_path), log_live=False)
    assert result.summary["epochs"] > 1
    assert 2.5 <= result.summary["time_s"] < 6.0  # stops when the next steps would not fit


def test_an_unknown_model_family_is_refused_before_any_work(
    workdir: Path, params: dict, capsys: pytest.CaptureFixture
) -> None:
    params["members"]["gru"]["model"] = "transformer"
    write_params(workdir, params)  # and no store: the params fail first
    with pytest.raises(SystemExit):
        main([])
    err = capsys.readouterr().err
    assert "param 'members.gru.model' must be one of ['gru', 'bilstm', 'cnn']" in err


def test_missing_store_says_what_to_do(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "dvc repro preprocess" in err


def test_a_cnn_member_trains_on_rendered_drawings_and_exports_what_it_was_fed(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    # The image family through the same loop, into its member's places: the checkpoint says it
    # was fed images of that size, and inference from the checkpoint alone (re-rendering the
    # val drawings) reproduces the val MAP@3 training logged for it.
    cfg = member_config(params, model="cnn", image_size=32, backbone="resnet10t", epochs=2)
    paths = run_paths(tmp_path, store_path, "cnn")
    result = run(cfg, paths, log_live=False)
    assert paths.model_path == tmp_path / "models" / "members" / "cnn" / "model.pt"
    loaded = load_model(paths.model_path)
    meta = loaded.meta
    assert meta["features"]["kind"] == "image" and meta["features"]["image_size"] == 32
    val = DrawingStore(store_path).split("val").read()
    proba = member_proba(loaded, val, batch_size=16)
    expected = reference_scores(reference_top_k(proba), val.labels)["map3"]
    assert meta["val/map3"] == result.summary["val/map3"] == pytest.approx(expected)


# ---------------------------------------------------------------- the weight average (EMA)


def test_the_weight_average_is_the_hand_computed_one() -> None:
    # One weight, start 0, three updates with the weight at 1, 2, 4, decay 0.5. The warm-up
    # decays d_t = (1 + t) / (10 + t) are 2/11, 3/12, 4/13 (all under 0.5), and
    # avg_t = d_t * avg_{t-1} + (1 - d_t) * w_t:
    #   avg_1 = 9/11 * 1                        = 0.818182
    #   avg_2 = 1/4 * 0.818182 + 3/4 * 2        = 1.704545
    #   avg_3 = 4/13 * 1.704545 + 9/13 * 4      = 3.293706
    from pipeline.training.ema import WeightAverage, ema_decay_at

    net = torch.nn.Linear(1, 1, bias=False)
    net.weight.data.fill_(0.0)
    ema = WeightAverage(net, decay=0.5)
    for w, expected in [(1.0, 0.818182), (2.0, 1.704545), (4.0, 3.293706)]:
        net.weight.data.fill_(w)
        ema.update(net)
        assert ema.model.weight.item() == pytest.approx(expected, abs=1e-6)
    assert net.weight.item() == 4.0  # the model itself is untouched
    # Past the warm-up the decay is the one asked for.
    assert ema_decay_at(0.5, 1000) == 0.5 and ema_decay_at(0.999, 10) == pytest.approx(11 / 20)


def test_with_ema_the_best_model_is_the_average_and_resume_keeps_it(
    store_path: Path, tmp_path: Path, params: dict
) -> None:
    cfg = member_config(params, epochs=2, ema_decay=0.9)
    torch.use_deterministic_algorithms(True)
    try:
        a, b = run_paths(tmp_path / "a", store_path), run_paths(tmp_path / "b", store_path)
        result = run(cfg, a, log_live=False)
        run(cfg, b, stop_after_steps=7, log_live=False)  # "killed" mid-epoch
        killed = torch.load(b.checkpoint_dir / "last.pt", weights_only=True)
        assert killed["ema"]["updates"] == 7
        run(cfg, b, log_live=False)
    finally:
        torch.use_deterministic_algorithms(False)
    last_a = torch.load(a.checkpoint_dir / "last.pt", weights_only=True)
    last_b = torch.load(b.checkpoint_dir / "last.pt", weights_only=True)
    for name, value in last_a["ema"]["model"].items():  # the same average, resumed or not
        assert torch.equal(value, last_b["ema"]["model"][name]), name
    # The exported model is the average that scored best, not the raw weights.
    exported = torch.load(a.model_path, weights_only=True)["model"]
    raw = last_a["model"]
    assert any(not torch.equal(exported[k], raw[k]) for k in raw if raw[k].is_floating_point())
    assert result.summary["val/map3"] == load_model(a.model_path).meta["val/map3"]
