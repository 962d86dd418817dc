"""Precision per family, checked on the CPU (the CUDA twins are in test_gpu.py).

bf16 autocast where the GPU has it, fp16 with a grad scaler where it does not, full precision on
the CPU; the sequence families run their RNN in float32 under any autocast (cuDNN's autocast
wrapper would cast it to fp16 whatever autocast's dtype: see pipeline/models/rnn.py), while the
conv stack and the head stay in the autocast dtype.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pipeline.models import FAMILIES
from pipeline.models.rnn import SequenceConfig
from pipeline.training import distributed as D
from pipeline.training.step import TrainStep
from tests.conftest import member_config, tiny_params
from tests.test_model import small_model
from tests.test_rnn_paths import padded_batch

SEQUENCE_MODELS = sorted(m for m, f in FAMILIES.items() if f.config is SequenceConfig)


class RNNInputs(TorchFunctionMode):
    """The dtype of the input of every RNN call (`_VF.gru` / `_VF.lstm`, padded or packed), seen
    where Python calls it: on the CPU these ops decompose before a dispatch mode would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("gru", "lstm"):
            self.seen.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_takes_bf16_where_it_can_and_fp16_elsewhere(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert D.amp_dtype(torch.device("cuda")) == expected
    assert D.amp_dtype(torch.device("cpu")) is None  # the CPU trains in full precision


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_on_the_cpu_no_scaler_and_no_autocast(model: str) -> None:
    member = member_config(tiny_params(), model=model)
    step = TrainStep(member.build(4), member.train, torch.device("cpu"))
    assert step.amp is None and not step.scaler.is_enabled()


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("path", ["padded", "fused"])
def test_the_rnn_runs_in_float32_under_bf16_autocast(model: str, path: str) -> None:
    net = small_model(model, batch_norm=False).train()  # batch norm would hand the RNN fp32
    net.rnn_path = path
    x, lengths = padded_batch()
    x = x.bfloat16()  # so the conv stack hands the RNN bf16 (on the CPU it would keep fp32)
    with RNNInputs() as rnn, torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x, lengths)
    assert rnn.seen and set(rnn.seen) == {torch.float32}, rnn.seen
    assert logits.dtype == torch.bfloat16  # the head still runs in the autocast dtype
    logits.float().sum().backward()  # and gradients flow back through the fp32 RNN
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_without_the_guard_autocast_would_reach_the_rnn() -> None:
    """The control: a bare GRU under CPU bf16 autocast is fed bf16 by the conv before it, so the
    check above can see a lower precision when there is one."""
    conv, gru = torch.nn.Conv1d(3, 8, 3), torch.nn.GRU(8, 8, batch_first=True)
    with RNNInputs() as rnn, torch.autocast("cpu", dtype=torch.bfloat16):
        gru(conv(torch.randn(2, 3, 10)).transpose(1, 2))
    assert rnn.seen == [torch.bfloat16]
