"""On a CUDA GPU: every model family trains under AMP, and the sequence models' fused cuDNN path
agrees with the padded path in fp32. Skipped without a GPU (the CPU twins: test_rnn_paths.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.models import MODELS, build_model, model_config
from pipeline.models.rnn import SequenceClassifier
from tests.conftest import polygon_drawings, tiny_params, train_config
from tests.test_model import random_batch, small_config
from tests.test_rnn_paths import TOL, loss_and_grads, padded_batch, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

N_CLASSES = 4
CUDA = torch.device("cuda")
SEQUENCE_MODELS = sorted(m for m, cls in MODELS.items() if issubclass(cls, SequenceClassifier))
# Each family with the path it trains on (None: its default); the sequence models also padded.
TRAINING_RUNS = [(m, None) for m in sorted(MODELS)] + [(m, "padded") for m in SEQUENCE_MODELS]
NOT_FLAT = "not part of single contiguous chunk"


def fixed_batch(model: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """32 drawings (x, lengths, labels) the family can learn: polygons rendered for image
    families; random point features shifted by the label for the others."""
    cfg = train_config(tiny_params(), model=model)
    if getattr(MODELS[model], "input_kind", "points") == "image":
        from pipeline.models import encoder_for  # the image families' encoder

        drawings = polygon_drawings(N_CLASSES, 8, seed=0)
        x, lengths = encoder_for(cfg).encode(drawings)
        labels = torch.from_numpy(np.asarray(drawings.labels, np.int64))
        return torch.from_numpy(x), torch.from_numpy(lengths), labels
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 32).tolist()
    x, length_tensor = random_batch(lengths)  # (32, T, F)
    labels = torch.arange(32) % N_CLASSES
    x[:, :, :2] += labels[:, None, None].float()  # a signal to learn
    x *= (torch.arange(x.shape[1])[None, :] < length_tensor[:, None])[:, :, None]  # zero padding
    return x, length_tensor, labels


@pytest.mark.parametrize(("model", "path"), TRAINING_RUNS)
def test_amp_training_lowers_the_loss(model: str, path: str | None) -> None:
    torch.manual_seed(0)
    cfg = train_config(tiny_params(), model=model)
    net = build_model(model_config(cfg, N_CLASSES)).to(CUDA).train()
    if path is not None:
        net.rnn_path = path
    x, lengths, labels = fixed_batch(model)
    x, labels = x.to(CUDA), labels.to(CUDA)  # lengths stay on the CPU, as in the trainer
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=amp):
            logits = net(x, lengths)  # (B, C)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert np.isfinite(losses).all(), losses
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


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
    net = build_model(small_config(model, num_layers=num_layers, dropout=0.0)).to(CUDA)
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
    cpu = build_model(small_config(model)).eval()
    x, lengths = padded_batch()
    with torch.no_grad():
        expected = cpu(x, lengths)  # the padded path
    gpu = build_model(small_config(model)).to(CUDA).eval()
    gpu.load_state_dict(cpu.state_dict())  # copies into the flat buffer: it stays flat
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logits = gpu(x.to(CUDA), lengths)
    assert not [w for w in caught if NOT_FLAT in str(w.message)]
    torch.testing.assert_close(logits.cpu(), expected, rtol=1e-4, atol=1e-4)
