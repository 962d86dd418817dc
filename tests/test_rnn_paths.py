"""The sequence models' two RNN paths (padded on the CPU, fused cuDNN on GPUs) are one model:
same logits, same gradients, same dropout placement, and a checkpoint from either runs on the
other. Everything here runs on the CPU, where both paths exist (GPU checks: test_gpu.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.features import N_FEATURES
from pipeline.models.rnn import SequenceClassifier
from tests.test_model import N_CLASSES, random_batch, small_model

SEQUENCE_MODELS = ["gru", "bilstm"]
# Ragged, two drawings of one step, and padded beyond the longest (16 > 12).
LENGTHS = [7, 1, 12, 3, 1, 9, 2]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, lengths = random_batch(LENGTHS, seed)  # (B, 12, F)
    return torch.cat([x, torch.zeros(len(LENGTHS), 4, N_FEATURES)], dim=1), lengths  # (B, 16, F)


def sequence_model(model: str, seed: int = 0, **changes: object) -> SequenceClassifier:
    torch.manual_seed(seed)
    net = small_model(model, **changes)
    assert isinstance(net, SequenceClassifier)
    return net


def run(net: SequenceClassifier, path: str, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    net.rnn_path = path
    try:
        return net(x, lengths)  # (B, C)
    finally:
        net.rnn_path = None


def loss_and_grads(
    net: SequenceClassifier, path: str, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    logits = run(net, path, x, lengths)  # (B, C)
    labels = torch.arange(len(lengths), device=logits.device) % N_CLASSES
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    assert len(grads) == len(list(net.parameters()))  # every parameter gets a gradient
    return loss.detach(), grads


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "meanmax"])
def test_paths_give_the_same_logits(model: str, num_layers: int, stride: int, pooling: str) -> None:
    net = sequence_model(model, num_layers=num_layers, conv_stride=stride, pooling=pooling).eval()
    x, lengths = padded_batch()
    with torch.no_grad():
        padded, fused = run(net, "padded", x, lengths), run(net, "fused", x, lengths)
    torch.testing.assert_close(fused, padded, **TOL)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_paths_agree_without_a_conv_front_end(model: str) -> None:
    # The RNN reads the features directly: lengths are not strided, inputs not masked by a conv.
    net = sequence_model(model, conv_channels=(), conv_stride=1).eval()
    x, lengths = padded_batch(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(
            run(net, "fused", x, lengths), run(net, "padded", x, lengths), **TOL
        )


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_paths_give_the_same_gradients(model: str, num_layers: int, stride: int) -> None:
    # Training mode (batch norm on batch statistics), dropout off so both runs are deterministic.
    net = sequence_model(model, num_layers=num_layers, conv_stride=stride, dropout=0.0).train()
    x, lengths = padded_batch()
    x_padded, x_fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_p, grads_p = loss_and_grads(net, "padded", x_padded, lengths)
    loss_f, grads_f = loss_and_grads(net, "fused", x_fused, lengths)
    torch.testing.assert_close(loss_f, loss_p, **TOL)
    assert grads_f.keys() == grads_p.keys()
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], **TOL, msg=name)
    torch.testing.assert_close(x_fused.grad, x_padded.grad, **TOL)


class ChannelScale(nn.Module):
    """A deterministic stand-in for dropout: scales feature c of the last dim by 1 + c / D, so
    it gives the same result on padded (B, T, D) and packed (N, D) tensors, and counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        d = h.shape[-1]
        return h * (1 + torch.arange(d, dtype=h.dtype) / d)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_dropout_sits_at_the_same_places_on_both_paths(model: str, num_layers: int) -> None:
    # Dropout applies to each RNN layer's input for layers > 0, and once before the head.
    net = sequence_model(model, num_layers=num_layers, dropout=0.0).train()
    net.dropout = ChannelScale()
    x, lengths = padded_batch()
    loss_p, grads_p = loss_and_grads(net, "padded", x, lengths)
    assert net.dropout.calls == num_layers
    loss_f, grads_f = loss_and_grads(net, "fused", x, lengths)
    assert net.dropout.calls == 2 * num_layers
    torch.testing.assert_close(loss_f, loss_p, **TOL)
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], **TOL, msg=name)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_fused_path_trains_with_dropout(model: str) -> None:
    net = sequence_model(model, dropout=0.5).train()
    x, lengths = padded_batch()
    torch.manual_seed(1)
    a = run(net, "fused", x, lengths)
    b = run(net, "fused", x, lengths)
    assert not torch.allclose(a, b)  # dropout is live in training
    net.eval()
    torch.testing.assert_close(run(net, "fused", x, lengths), run(net, "padded", x, lengths))


def rnn_keys(net: nn.Module) -> list[str]:
    return sorted(k for k in net.state_dict() if "rnns." in k)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize(("trained_on", "run_on"), [("padded", "fused"), ("fused", "padded")])
def test_a_checkpoint_from_one_path_runs_on_the_other(
    tmp_path: Path, model: str, trained_on: str, run_on: str
) -> None:
    net = sequence_model(model, seed=0).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    x, lengths = padded_batch()
    for _ in range(3):  # move the weights and batch norm statistics off their initial values
        loss_and_grads(net, trained_on, x, lengths)
        optimizer.step()
    torch.save(net.state_dict(), tmp_path / "m.pt")

    fresh = sequence_model(model, seed=1).eval()
    assert rnn_keys(fresh) == rnn_keys(net)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            run(fresh, run_on, x, lengths), run(net, trained_on, x, lengths), **TOL
        )


def test_parameter_layout_is_the_one_every_checkpoint_has() -> None:
    # Checkpoints written before the fused path existed load unchanged: same keys, no new ones.
    net = sequence_model("bilstm", num_layers=2)
    names = [
        f"{d}_rnns.{i}.{w}_{m}_l0"
        for d in ("forward", "backward")
        for i in (0, 1)
        for w in ("weight", "bias")
        for m in ("ih", "hh")
    ]
    assert rnn_keys(net) == sorted(names)


def test_auto_path_is_padded_on_the_cpu_and_fused_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    net = sequence_model("gru").eval()
    assert net.rnn_path is None
    assert net.resolved_path(torch.device("cpu")) == "padded"
    assert net.resolved_path(torch.device("cuda", 0)) == "fused"
    net.rnn_path = "fused"
    assert net.resolved_path(torch.device("cpu")) == "fused"

    net.rnn_path = None

    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the fused path ran on the CPU")

    monkeypatch.setattr(net, "_rnn_fused", refuse)
    x, lengths = padded_batch()
    assert net(x, lengths).shape == (len(LENGTHS), N_CLASSES)


def test_unknown_path_is_refused() -> None:
    net = sequence_model("gru")
    net.rnn_path = "packed"
    x, lengths = padded_batch()
    with pytest.raises(ValueError, match="rnn_path"):
        net(x, lengths)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_batches_arrive_longest_first_so_packing_needs_no_permutation(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sorting on the host as batches are made spares the fused path the sort permutation
    # (a host-to-device copy) and the unsort gather; an unsorted batch still works.
    from pipeline.core.encoders import PointsEncoder
    from pipeline.models import rnn
    from pipeline.training.batches import make_batch
    from tests.conftest import labelled_random_drawings

    sorted_flags: list[bool] = []
    pack = rnn.pack_padded_sequence

    def spy(h: torch.Tensor, lengths: torch.Tensor, **kwargs: bool) -> rnn.PackedSequence:
        sorted_flags.append(kwargs["enforce_sorted"])
        return pack(h, lengths, **kwargs)

    monkeypatch.setattr(rnn, "pack_padded_sequence", spy)
    drawings = labelled_random_drawings(np.random.default_rng(0), 20)
    x, lengths, _ = make_batch(drawings, PointsEncoder(32))
    assert torch.equal(lengths, lengths.sort(descending=True).values)
    net = sequence_model(model).eval()
    with torch.no_grad():
        fused = run(net, "fused", x, lengths)
        assert sorted_flags == [True]  # one packing per forward pass
        shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
        again = run(net, "fused", x[shuffled], lengths[shuffled])
    assert sorted_flags[-1] is False  # packed with a permutation, same answers
    torch.testing.assert_close(again, fused[shuffled], **TOL)
