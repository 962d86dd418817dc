"""Section 1: the train step, alone. Samples/s of the trainer's own `TrainStep` (forward under
autocast, loss, backward, clipping, AdamW) per member, RNN path and batch size, on pre-built
batches already on the device, so the figure is the model's and not the input pipeline's.

The model is built as the trainer builds it: `member.build`, channels_last on CUDA for a family
of fixed input shape (with cuDNN autotuning on, as `pipeline.train.run` sets it), the images
converted to NHWC inside the step as in training. Heads have `MODEL_CLASSES` outputs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.gpu_check.env import amp_name, error_note, say, sync
from benchmarks.gpu_check.settings import MODEL_CLASSES, Settings
from pipeline.core.drawings import Drawings
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models.members import MemberConfig
from pipeline.training import distributed as D
from pipeline.training.batches import Batch, make_batch
from pipeline.training.step import TrainStep

SAMPLE_BATCHES = 4  # drawings read from the store: this many times what the batches need


def prebuilt_batches(
    drawings: Drawings, member: MemberConfig, batch: int, count: int, pin: bool
) -> list[Batch]:
    """`count` augmented batches of `batch` drawings, length-bucketed as `TrainBatches` cuts a
    pool (similar lengths per batch, little padding), in random order; pinned for fast copies."""
    rng = np.random.default_rng(batch)
    encoder = member.encoder()
    n = batch * count
    index = rng.choice(len(drawings), n, replace=n > len(drawings))
    lengths = np.minimum(drawings.lengths[index], encoder.max_points)
    groups = np.array_split(index[np.argsort(lengths, kind="stable")], count)
    augment = Augment.from_train(member.train)
    out = []
    for i in rng.permutation(count):
        x, lengths_t, labels = make_batch(
            drawings.take(groups[i]), encoder, augment, np.random.default_rng([batch, int(i)])
        )
        if pin:
            x, labels = x.pin_memory(), labels.pin_memory()
        out.append((x, lengths_t, labels))
    return out


def step_row(
    member: MemberConfig, path: str, batch: int, compiled: bool, amp: str
) -> dict[str, Any]:
    return {
        "member": member.name,
        "model": member.model,
        "path": path,
        "batch": batch,
        "compile": compiled,
        "amp": amp,
        "samples_per_s": None,
        "step_ms": None,
        "peak_mem_mib": None,
        "warmup_s": None,
        "steps": 0,
        "steps_per_s": None,
        "note": "",
    }


def build_step(
    member: MemberConfig, path: str, compiled: bool, device: torch.device, backend: str
) -> TrainStep:
    """The member's model and its `TrainStep`, built as the trainer builds them."""
    torch.manual_seed(0)
    fixed, cuda = member.family.fixed_shape, device.type == "cuda"
    torch.backends.cudnn.benchmark = fixed  # as pipeline.train.run sets it
    model = member.build(MODEL_CLASSES).to(device).train()
    if fixed and cuda:  # as the trainer: NHWC for the convolutions of fixed-shape inputs
        model = model.to(memory_format=torch.channels_last)
    if path != "-":
        model.rnn_path = path
    step = TrainStep(model, member.train, device, channels_last=fixed and cuda)
    # Set after: TrainStep's `net or model` asks a compiled module for its len(), which
    # torch.compile's wrapper refuses (a one-line fix in pipeline/training/step.py).
    step.net = torch.compile(model, backend=backend) if compiled else model
    return step


def train_case(
    member: MemberConfig,
    path: str,
    batches: list[Batch],
    compiled: bool,
    device: torch.device,
    s: Settings,
) -> dict[str, Any]:
    """Samples/s of one (member, path, batch size, compile) case on pre-built batches."""
    row = step_row(member, path, len(batches[0][2]), compiled, amp_name(D.amp_dtype(device)))
    notes = [f"backend {s.compile_backend}"] if compiled else []
    step = data = None
    cuda = device.type == "cuda"
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step = build_step(member, path, compiled, device, s.compile_backend)
        data = [
            (x.to(device, non_blocking=True), lengths, labels.to(device, non_blocking=True))
            for x, lengths, labels in batches
        ]
        if compiled and not member.family.fixed_shape:
            for x, _, _ in data:  # drawing lengths vary per batch: one graph for every T
                torch._dynamo.maybe_mark_dynamic(x, 1)
        lr = member.train.learning_rate
        timed = _time_steps(lambda i: step(*data[i % len(data)], lr), len(data), device, s)
        notes.append(timed.pop("note", ""))
        row |= timed | {"samples_per_s": timed["steps_per_s"] * row["batch"]}
        if cuda:
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    except Exception as err:  # compile failures, out of memory: a note, and on to the next
        notes.append(error_note("compile failed: " if compiled else "failed: ", err))
    finally:
        step = data = None  # free the GPU memory before the next case
        if compiled:
            torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()
    row["note"] = ", ".join(filter(None, notes))
    return row


def _time_steps(step: Any, shapes: int, device: torch.device, s: Settings) -> dict[str, Any]:
    """Warm up on every pre-built shape once (compiles; cuDNN and oneDNN build a plan per shape,
    seconds each on a CPU), then time steps until `max_steps` or `case_s`."""
    warmup = max(s.warmup_steps, shapes)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync(device)
    out: dict[str, Any] = {"warmup_s": time.perf_counter() - start}
    check = 1 if device.type == "cpu" else 5  # a clock check syncs the GPU: not every step
    steps, start = 0, time.perf_counter()
    while True:
        loss = step(warmup + steps)
        steps += 1
        if steps >= s.max_steps or steps % check == 0:
            sync(device)
            elapsed = time.perf_counter() - start
            if steps >= s.max_steps or elapsed >= s.case_s:
                break
    final = float(loss.item())
    out |= {"steps_per_s": steps / elapsed, "step_ms": 1000 * elapsed / steps, "steps": steps}
    if not math.isfinite(final):
        out["note"] = f"loss {final}"
    return out


def setup(dev: torch.device, members: dict[str, MemberConfig]) -> None:
    """The process-wide settings the trainer would make: its GPU, and torch threads as
    `train.threads` sets them (0 = the cores its loader workers leave), so the step runs with
    the threads it will have in training, and a shared CPU is not oversubscribed (two threads
    on two busy cores ran the step 5-8x slower than one here)."""
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    train = next(iter(members.values())).train
    torch.set_num_threads(D.torch_threads(train.threads, train.workers, D.Dist(0, 1, 0)))


class TrainSteps:
    """What the train-step cases share: the device, the settings, the members, a sample of the
    store's training drawings and the pre-built batches (one set per encoder and batch size)."""

    def __init__(
        self, dev: torch.device, s: Settings, members: dict[str, MemberConfig], store: Path
    ) -> None:
        self.dev, self.s, self.members = dev, s, members
        split = DrawingStore(store).split("train")  # class-interleaved: its head is a fair sample
        self.drawings = split.read(0, SAMPLE_BATCHES * max(s.batches) * s.prebuilt)
        self._batches: dict[tuple[Any, int], list[Batch]] = {}

    def batches(self, member: MemberConfig, batch: int) -> list[Batch]:
        key = (member.encoder(), batch)
        if key not in self._batches:
            self._batches[key] = prebuilt_batches(
                self.drawings, member, batch, self.s.prebuilt, self.dev.type == "cuda"
            )
        return self._batches[key]

    def case(self, name: str, path: str, batch: int, compiled: bool) -> dict[str, Any]:
        member = self.members[name]
        row = train_case(member, path, self.batches(member, batch), compiled, self.dev, self.s)
        rate = f"{row['samples_per_s']:,.0f} samples/s" if row["samples_per_s"] else "-"
        flag = " compiled" if compiled else ""
        say(f"train step {name}/{path} batch {batch}{flag}: {rate} {row['note']}")
        return row
