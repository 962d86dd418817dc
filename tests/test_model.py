"""Models: logits per drawing, unaffected by padding or batch mates; checkpoints round-trip (the
sequence families here; the image family's own checks: test_cnn.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.common.config import to_dict
from pipeline.core.drawings import Drawings
from pipeline.core.features import N_FEATURES
from pipeline.models import FAMILIES
from pipeline.models.checkpoint import LoadedModel, load_model
from pipeline.models.cnn import ImageConfig
from pipeline.models.layers import masked_pool
from pipeline.models.predictor import member_proba
from pipeline.models.rnn import SequenceConfig

N_CLASSES = 7
# The families fed per-point feature sequences, (B, T, F) padded: what padding checks apply to.
SEQUENCE_MODELS = sorted(m for m, f in FAMILIES.items() if f.config is SequenceConfig)
IMAGE = ImageConfig(
    image_size=32, backbone="resnet10t", dropout=0.0, max_points=32, pretrained=False
)


def test_every_family_is_fed_points_or_images() -> None:
    kinds = {
        m: f.encoder(small_config() if m != "cnn" else IMAGE).kind for m, f in FAMILIES.items()
    }
    assert kinds == {"gru": "points", "bilstm": "points", "cnn": "image"}
    assert SEQUENCE_MODELS == ["bilstm", "gru"]


def small_config(**changes: object) -> SequenceConfig:
    cfg = SequenceConfig(
        hidden_size=12,
        num_layers=2,
        conv_channels=(8, 10),
        conv_kernel=5,
        conv_stride=2,
        batch_norm=True,
        dropout=0.1,
        pooling="meanmax",
        max_points=32,
    )
    return dataclasses.replace(cfg, **changes)


def small_model(model: str, **changes: object) -> nn.Module:
    """A small model of family `model` (a sequence family, `changes` to its config)."""
    return FAMILIES[model].build(small_config(**changes), N_CLASSES)


@pytest.mark.parametrize("model", sorted(FAMILIES))
@pytest.mark.parametrize("batch", [1, 5])
def test_every_family_maps_its_encoding_to_logits(model: str, batch: int) -> None:
    # The family contract: its encoder's (x, lengths) in, (B, C) logits out.
    family = FAMILIES[model]
    cfg = IMAGE if family.config is ImageConfig else small_config()
    x, lengths = family.encoder(cfg).encode(drawings(batch, seed=batch).take(np.arange(batch)))
    net = family.build(cfg, N_CLASSES).eval()
    assert net(torch.from_numpy(x), torch.from_numpy(lengths)).shape == (batch, N_CLASSES)


def random_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths), N_FEATURES)  # (B, T, F)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, N_FEATURES, generator=gen)
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "meanmax"])
def test_forward_gives_logits_per_drawing(model: str, pooling: str) -> None:
    net = small_model(model, pooling=pooling)
    x, lengths = random_batch([5, 1, 9, 2])
    assert net(x, lengths).shape == (4, N_CLASSES)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("stride", [1, 2])
def test_logits_do_not_depend_on_padding_or_batch_mates(model: str, stride: int) -> None:
    net = small_model(model, conv_stride=stride).eval()
    x, lengths = random_batch([7, 3, 12, 1, 8])
    together = net(x, lengths)  # (5, C), padded to 12
    for i, n in enumerate(lengths.tolist()):
        alone = net(x[i : i + 1, :n], lengths[i : i + 1])  # no padding at all
        torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-5)
    # Extra padding and reordered batch mates change nothing either.
    wider = torch.cat([x, torch.zeros(5, 6, N_FEATURES)], dim=1)[[3, 0, 4, 2, 1]]
    torch.testing.assert_close(
        net(wider, lengths[[3, 0, 4, 2, 1]]), together[[3, 0, 4, 2, 1]], rtol=1e-5, atol=1e-5
    )


def n_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_models_differ_by_rnn_cell() -> None:
    # Same conv front-end and head; the cell differs. An LSTM has 4 gates where a GRU has 3, each
    # gate H x (inputs + H) weights and 2 x H biases (PyTorch's layout). With H = 12 the first
    # layer reads 10 conv channels and the second 2 x 12 (both directions), so the bilstm has
    # one gate more, for 2 layers x 2 directions:
    gate = {1: 12 * (10 + 12) + 2 * 12, 2: 12 * (2 * 12 + 12) + 2 * 12}  # 288, 456
    extra = 2 * (gate[1] + gate[2])
    gru, lstm = small_model("gru"), small_model("bilstm")
    assert n_parameters(lstm) - n_parameters(gru) == extra == 1488


def test_masked_pooling_hand_worked() -> None:
    # Two drawings, the second 2 steps long: its padded third step (99s) must not count.
    h = torch.tensor(
        [[[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]], [[2.0, 6.0], [-4.0, 2.0], [99.0, 99.0]]]
    )
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = {
        "sum": [[9.0, 2.0], [-2.0, 8.0]],
        "mean": [[3.0, 2 / 3], [-1.0, 4.0]],
        "max": [[5.0, 4.0], [2.0, 6.0]],
        "meanmax": [[3.0, 2 / 3, 5.0, 4.0], [-1.0, 4.0, 2.0, 6.0]],
    }
    for pooling, want in expected.items():
        torch.testing.assert_close(masked_pool(h, mask, pooling), torch.tensor(want))


def test_even_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        small_config(conv_kernel=4)


def save_checkpoint(path: Path, model: str = "gru") -> torch.nn.Module:
    """A small checkpoint of family `model`: a sequence model fed points of at most 32 points,
    or a resnet10t fed 32-pixel images of them."""
    cfg = IMAGE if model == "cnn" else small_config()
    net = FAMILIES[model].build(cfg, N_CLASSES).eval()
    meta = {
        "classes": [f"c{i}" for i in range(N_CLASSES)],
        "model": model,
        "model_cfg": to_dict(cfg),
        "features": FAMILIES[model].encoder(cfg).meta(),
        "augment": {
            "scale": 0.1,
            "shear": 0.1,
            "rotate_deg": 10.0,
            "jitter": 0.5,
            "stroke_dropout": 0.1,
        },
        "train_cfg": {},
    }
    torch.save({"model": net.state_dict(), "meta": meta}, path)
    return net


def drawings(n: int, seed: int = 0) -> Drawings:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = int(rng.integers(0, 60)) if i % 5 else 0  # every 5th drawing is empty (bad test row)
        items.append(
            [(rng.integers(0, 256, k).tolist(), rng.integers(0, 256, k).tolist())] if k else []
        )
    return Drawings.from_strokes(items)


@pytest.mark.parametrize("model", ["gru", "cnn"])
def test_checkpoint_loads_with_weights_only_and_predicts_in_input_order(
    tmp_path: Path, model: str
) -> None:
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt")
    assert isinstance(loaded.model_cfg, type(IMAGE if model == "cnn" else small_config()))
    batch = drawings(23)
    proba = member_proba(loaded, batch, batch_size=4)  # sorted by length inside
    assert proba.shape == (23, N_CLASSES) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # Row i is drawing i: predicting one drawing alone gives the same row.
    for i in (0, 7, 22):
        alone = member_proba(loaded, batch.take(np.array([i])), batch_size=4)
        np.testing.assert_allclose(alone[0], proba[i], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["bilstm", "cnn"])
def test_tta_is_seeded_and_averages_augmented_passes(tmp_path: Path, model: str) -> None:
    save_checkpoint(tmp_path / "m.pt", model)
    loaded: LoadedModel = load_model(tmp_path / "m.pt")
    batch = drawings(12)
    plain = member_proba(loaded, batch, 8)
    a = member_proba(loaded, batch, 8, tta=2, seed=3)
    b = member_proba(loaded, batch, 8, tta=2, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-5)


def test_missing_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    from pipeline.common.errors import PipelineError

    with pytest.raises(PipelineError, match="dvc repro train"):
        load_model(tmp_path / "nope.pt")


def test_a_mirrored_drawing_is_flipped_left_to_right() -> None:
    d = Drawings.from_strokes([[([0, 10, 255], [5, 6, 7])], [([100], [1])]])
    m = d.mirrored()
    assert m.points[:, 0].tolist() == [255, 245, 0, 155]
    assert m.points[:, 1:].tolist() == d.points[:, 1:].tolist()  # y and pen untouched
    assert m.offsets.tolist() == d.offsets.tolist()


@pytest.mark.parametrize("model", ["gru", "cnn"])
def test_flip_tta_averages_a_drawing_and_its_mirror(tmp_path: Path, model: str) -> None:
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt")
    batch = drawings(15, seed=2)
    plain = member_proba(loaded, batch, 8)
    mirrored = member_proba(loaded, batch.mirrored(), 8)
    flipped = member_proba(loaded, batch, 8, flip=True)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(flipped, plain)  # the mirror is another drawing to the model
