"""On a CUDA GPU: every model family trains under AMP, and the sequence models' fused cuDNN path
agrees with the padded path in fp32. Skipped without a GPU (the CPU twins: test_rnn_paths.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.models import FAMILIES
from pipeline.models.rnn import SequenceClassifier, SequenceConfig
from pipeline.training.step import TrainStep
from tests.conftest import member_config, polygon_drawings, tiny_params
from tests.test_model import random_batch, small_model
from tests.test_rnn_paths import TOL, loss_and_grads, padded_batch, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

N_CLASSES = 4
CUDA = torch.device("cuda")
SEQUENCE_MODELS = sorted(m for m, f in FAMILIES.items() if f.config is SequenceConfig)
# Each family with the path it trains on (None: its default); the sequence models also padded.
TRAINING_RUNS = [(m, None) for m in sorted(FAMILIES)] + [(m, "padded") for m in SEQUENCE_MODELS]
NOT_FLAT = "not part of single contiguous chunk"


def fixed_batch(model: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """32 drawings (x, lengths, labels) the family can learn: polygons rendered for image
    families; random point features shifted by the label for the others."""
    member = member_config(tiny_params(), model=model)
    if member.encoder().kind == "image":
        drawings = polygon_drawings(N_CLASSES, 8, seed=0)
        x, lengths = member.encoder().encode(drawings)
        labels = torch.from_numpy(np.asarray(drawings.labels, np.int64))
        return torch.from_numpy(x), torch.from_numpy(lengths), labels
    rng = np.random.default_rng(0)
    lengths = sorted(rng.integers(1, 40, 32).tolist(), reverse=True)  # as batches arrive
    x, length_tensor = random_batch(lengths)  # (32, T, F)
    labels = torch.arange(32) % N_CLASSES
    x[:, :, :2] += labels[:, None, None].float()  # a signal to learn
    x *= (torch.arange(x.shape[1])[None, :] < length_tensor[:, None])[:, :, None]  # zero padding
    return x, length_tensor, labels


@pytest.mark.parametrize(("model", "path"), TRAINING_RUNS)
def test_amp_training_lowers_the_loss(model: str, path: str | None) -> None:
    # The trainer's own step (autocast, scaler where fp16, fused AdamW) on each family.
    torch.manual_seed(0)
    member = member_config(tiny_params(), model=model, learning_rate=1e-2)
    net = member.build(N_CLASSES).to(CUDA).train()
    if path is not None:
        net.rnn_path = path
    step = TrainStep(net, member.train, CUDA, channels_last=member.family.fixed_shape)
    x, lengths, labels = fixed_batch(model)
    losses = [float(step(x, lengths, labels, 1e-2)) for _ in range(20)]
    assert np.isfinite(losses).all(), losses
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


class _RNNDtypes(TorchDispatchMode):
    """The dtype of the input of every cuDNN RNN call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten._cudnn_rnn:
            self.seen.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("path", ["fused", "padded"])
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_the_rnn_runs_in_float32_under_autocast(model: str, path: str, amp: torch.dtype) -> None:
    # cuDNN's autocast wrapper would cast the RNN to fp16 even under bf16 autocast: the model
    # turns autocast off around it, so cuDNN sees float32 whatever the autocast dtype.
    net = small_model(model).to(CUDA).train()
    net.rnn_path = path
    x, lengths = padded_batch()
    with _RNNDtypes() as seen, torch.autocast("cuda", dtype=amp):
        logits = net(x.to(CUDA), lengths)
    assert seen.seen and set(seen.seen) == {torch.float32}, seen.seen
    assert logits.dtype == amp  # the head still runs in the autocast dtype


@pytest.fixture
def fp32_cudnn() -> Iterator[None]:
    """Plain fp32 cuDNN RNNs and convolutions (TF32 is their default), so the paths, and the
    GPU and the CPU, agree to fp32 tolerance. (Not monkeypatch: these settings objects only
    look like attributes.)"""
    settings = (torch.backends.cudnn.rnn, torch.backends.cudnn.conv)
    before = [s.fp32_precision for s in settings]
    for s in settings:
        s.fp32_precision = "ieee"
    yield
    for s, value in zip(settings, before, strict=True):
        s.fp32_precision = value


@pytest.mark.usefixtures("fp32_cudnn")
@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_fused_and_padded_paths_agree_on_cuda(model: str, num_layers: int) -> None:
    torch.manual_seed(0)
    net = small_model(model, num_layers=num_layers, dropout=0.0).to(CUDA)
    assert isinstance(net, SequenceClassifier)
    # `.to(CUDA)` laid each layer's two directions out as one cuDNN buffer.
    for layer in net._layer_weights():
        assert len({w.untyped_storage().data_ptr() for w in layer}) == 1
    x, lengths = padded_batch()
    x = x.to(CUDA)
    net.eval()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = run(net, "fused", x, lengths)  # (B, C); lengths on the CPU
        auto = net(x, lengths)
    assert not [w for w in caught if NOT_FLAT in str(w.message)]  # no per-call weight copies
    torch.testing.assert_close(auto, fused, **TOL)  # auto picks fused on CUDA
    with torch.no_grad():
        padded = run(net, "padded", x, lengths)
        on_device = run(net, "padded", x, lengths.to(CUDA))  # lengths may live on the GPU
        fused_device = run(net, "fused", x, lengths.to(CUDA))
    torch.testing.assert_close(fused, padded, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(on_device, padded, **TOL)
    torch.testing.assert_close(fused_device, fused, **TOL)

    net.train()  # batch statistics; dropout is off
    loss_p, grads_p = loss_and_grads(net, "padded", x, lengths)
    loss_f, grads_f = loss_and_grads(net, "fused", x, lengths)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-4, atol=1e-4)
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.usefixtures("fp32_cudnn")
@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_a_cpu_checkpoint_runs_fused_on_cuda(model: str) -> None:
    torch.manual_seed(0)
    cpu = small_model(model).eval()
    x, lengths = padded_batch()
    with torch.no_grad():
        expected = cpu(x, lengths)  # the padded path
    gpu = small_model(model).to(CUDA).eval()
    gpu.load_state_dict(cpu.state_dict())  # copies into the flat buffer: it stays flat
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logits = gpu(x.to(CUDA), lengths)
    assert not [w for w in caught if NOT_FLAT in str(w.message)]
    torch.testing.assert_close(logits.cpu(), expected, rtol=1e-4, atol=1e-4)
