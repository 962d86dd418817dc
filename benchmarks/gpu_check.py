"""GPU readiness check: one prepared script that measures what training on this machine will do.

    python -m benchmarks.gpu_check                       # a GPU machine: under 5 minutes
    python -m benchmarks.gpu_check --device cpu --quick  # this CPU: the same steps, under 2 min

No download and no `data/`: it builds a small store in a temp folder, from the real kaggle16
sample (`../shared/quickdraw/kaggle16`) when it is there, else from the synthetic source (20
procedural classes; the GPU machine's case; its doodles have about half the points of real
drawings, so sequence-model figures there run high: the header prints both). Then, for every
family of `pipeline.models.MODELS` (and each RNN path of the sequence ones, padded and fused):

1. train step: samples/s of forward + backward + AdamW step (autocast and gradient clipping as
   the trainer does them) on pre-built, length-bucketed batches already on the device, at each
   batch size, with `torch.compile` off and (where it makes sense, time allowing) on; the peak
   GPU memory of each case. Models have 340 classes (Kaggle's), whatever the store holds.
2. input pipeline: drawings/s of the real `TrainBatches` + `make_loader` with N DataLoader
   workers, per input kind (points: gru, bilstm; image: cnn), epochs restarting as in training.
3. training loop: `pipeline.train.run` under a time budget; steps/s and samples/s from its summary.
4. DDP: `torchrun --standalone --nproc-per-node=<GPUs> -m pipeline.train --member gru` in a temp
   working folder (NCCL); skipped with one device. `--ddp-cpu` runs it with 2 gloo processes.

Every case is time-boxed (warm-up steps, then a fixed number of steps or seconds, with
`torch.cuda.synchronize()` around the clock); a failing case (compile error, out of memory)
becomes a row note, never a crash. The compiled cases run last, in a child process given what
is left of the run's time budget (`--budget-s`, 285 s on a GPU) and killed when it is spent:
cases it did not reach say so. Prints markdown tables and writes every figure to `--out`
(JSON, rewritten after each step, so a crash still leaves what was measured).

Model sizes are the repo's params (`train:` with `members.<family>:` on top), the cnn at 128 px
on a GPU; `--preset full-gpu` measures a preset's sizes instead (configs/full-gpu.yaml).

Needs the repo's runtime requirements only (torch, numpy, zarr, numcodecs, numba, timm, pydantic,
PyYAML, tqdm; pandas through `pipeline`); dvclive is optional (without it the DDP run calls
`pipeline.train.run` itself, under the same torchrun, instead of the stage's `main`).
Not a `bench_*` module: `make bench` does not run it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from benchmarks.kaggle16 import KAGGLE16_DIR, REPO_DIR, paths_reading
from pipeline.common.config import (
    PreprocessConfig,
    TrainConfig,
    flatten,
    from_dict,
    load_members,
    load_params,
)
from pipeline.common.paths import Paths
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models import MODELS, build_model, encoder_for, model_config
from pipeline.models.rnn import RNN_PATHS, SequenceClassifier
from pipeline.training import distributed as D
from pipeline.training.batches import Batch, TrainBatches, make_batch, make_loader

DEFAULT_OUT = REPO_DIR / "benchmarks" / "results" / "gpu_check.json"
MODEL_CLASSES = 340  # the competition's: heads are sized as in real training
# Points per drawing of real Quick, Draw! drawings (kaggle16: mean 47.6, p90 72); synthetic
# doodles have about half (mean 22), so sequence models run about half the RNN steps on them.
REAL_POINTS_MEAN = 47.6
DDP_MEMBER = "gru"


@dataclass(frozen=True)
class Settings:
    """Sizes and time boxes of one run (`settings_for`; tests shrink them further)."""

    synthetic_classes: int  # at most 20 (the synthetic source's templates)
    synthetic_per_class: int
    kaggle16_per_class: int  # 0 = every drawing of the sample
    val_per_class: int
    block_size: int  # store blocks: the unit TrainBatches shuffles and shards to workers
    batches: tuple[int, ...]  # train-step batch sizes
    prebuilt: int  # distinct pre-built batches per (input, batch size), cycled
    warmup_steps: int
    max_steps: int  # timed steps per case, at most...
    case_s: float  # ... or this many seconds (at least one timed step)
    compile: str  # none | one | all: which train-step cases also run under torch.compile
    compile_backend: str
    compile_cost_s: float  # a compile case starts only if this much of the budget is left
    image_size: int  # 0 = each family's own (params)
    workers: tuple[int, ...]  # DataLoader workers of the input-pipeline cases
    pipeline_s: float
    loop_s: float  # time budget of each training-loop run
    loop_batch: int
    loop_workers: int
    ddp_s: float
    budget_s: float  # the whole run's target; compile cases are dropped to keep it


def settings_for(device: torch.device, quick: bool) -> Settings:
    cores = os.cpu_count() or 1
    if quick:  # a 2-core CPU in under 2 minutes: every step, small sizes
        return Settings(
            synthetic_classes=20,
            synthetic_per_class=250,
            kaggle16_per_class=300,
            val_per_class=10,
            block_size=1024,
            batches=(64, 128),
            prebuilt=2,
            warmup_steps=1,
            max_steps=3,
            case_s=1.0,
            compile="one",
            compile_backend="aot_eager" if device.type == "cpu" else "inductor",
            compile_cost_s=20.0,
            image_size=0,
            workers=(0, 1),
            pipeline_s=2.0,
            loop_s=10.0,
            loop_batch=64,
            loop_workers=0,
            ddp_s=8.0,
            budget_s=110.0,
        )
    gpu = device.type == "cuda"
    return Settings(
        synthetic_classes=20,
        synthetic_per_class=5000,
        kaggle16_per_class=0,
        val_per_class=10,
        block_size=4096,
        batches=(512, 1024),
        prebuilt=6,
        warmup_steps=3,
        max_steps=200,
        case_s=3.0,
        compile="all",
        compile_backend="inductor",
        compile_cost_s=45.0,
        image_size=128 if gpu else 0,
        workers=tuple(sorted({w for w in (0, 4, 8) if w <= max(cores - 1, 0)})),
        pipeline_s=4.0,
        loop_s=15.0 if gpu else 30.0,
        loop_batch=512,
        loop_workers=min(8, max(cores // 2, 0)),
        ddp_s=30.0,
        budget_s=285.0,
    )


# ---------------------------------------------------------------- small helpers


def _say(text: str) -> None:
    print(f"gpu_check: {text}", file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _error_note(prefix: str, err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{prefix}{type(err).__name__}: {first[:160]}"


def _amp_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_rounded(report), indent=2) + "\n")
    tmp.replace(out)


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """The trainer's progress bar and log lines, kept (shown only when a run fails)."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield buffer


def pick_device(name: str) -> torch.device:
    """auto: the GPU when torch sees one; a CUDA device always with its index (cuda:0)."""
    device = torch.device(
        name if name != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(
                "error: --device cuda but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})"
            )
        device = torch.device("cuda", device.index or 0)
    return device


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "amp": _amp_name(D.amp_dtype(device)),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
    for name in ("numpy", "zarr", "numcodecs", "numba", "timm", "torchvision", "dvclive"):
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = None
    return env


# ---------------------------------------------------------------- configs and the store


def load_repo_params(preset: str | None) -> dict[str, Any]:
    params = load_params(REPO_DIR / "params.yaml")
    if preset:
        from pipeline.preset import load_preset, merged

        params = merged(params, load_preset(preset, REPO_DIR / "configs"))
    return params


def family_configs(params: dict[str, Any], families: list[str]) -> dict[str, TrainConfig]:
    """Each family's `TrainConfig`: `train:` with `members.<family>:` on top (as the stages)."""
    p = copy.deepcopy(params)
    own = p.get("members") or {}
    p["members"] = {f: {**(own.get(f) or {}), "model": f} for f in families}
    p["ensemble"] = {**p["ensemble"], "members": list(families)}
    return load_members(p)


def with_image_size(cfg: TrainConfig, s: Settings) -> TrainConfig:
    return dataclasses.replace(cfg, image_size=s.image_size) if s.image_size else cfg


def build_store(work: Path, source: str, s: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """A store at `work/processed/drawings.zarr` from kaggle16 or the synthetic source."""
    from pipeline.preprocess import run as preprocess

    if source == "auto":
        source = "kaggle16" if KAGGLE16_DIR.is_dir() else "synthetic"
    start = time.perf_counter()
    if source == "kaggle16":
        if not KAGGLE16_DIR.is_dir():
            raise SystemExit(f"error: --source kaggle16 but {KAGGLE16_DIR} is missing")
        raw_dir = KAGGLE16_DIR
        cap = s.kaggle16_per_class and s.kaggle16_per_class + s.val_per_class
    else:
        from pipeline.sources.synthetic import write_synthetic

        raw_dir = work / "raw"
        write_synthetic(
            raw_dir, s.synthetic_classes, s.synthetic_per_class + s.val_per_class, 1, seed=0
        )
        cap = 0
    generated_s = time.perf_counter() - start
    wanted = {
        "max_per_class": cap,
        "val_per_class": s.val_per_class,
        "blend_per_class": 0,
        "block_size": s.block_size,
    }
    cfg = from_dict(PreprocessConfig, params["preprocess"], "preprocess")
    known = {f.name for f in dataclasses.fields(PreprocessConfig)}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in wanted.items() if k in known})
    paths = dataclasses.replace(
        Paths.under(work), raw_dir=raw_dir, processed_dir=work / "processed", metrics_dir=work
    )
    preprocess(cfg, paths, show_progress=False)
    store = DrawingStore(paths.store_path)
    train = store.split("train")
    lengths = train.read().lengths
    return {
        "path": str(paths.store_path),
        "source": source,
        "classes": store.n_classes,
        "train": len(train),
        "val": len(store.split("val")),
        "blocks": train.n_blocks,
        "block_size": s.block_size,
        "points_mean": float(lengths.mean()),  # the sequence models' steps scale with it
        "points_p90": float(np.percentile(lengths, 90)),
        "build_s": time.perf_counter() - start,
        "generate_s": generated_s,
    }


# ---------------------------------------------------------------- 1. the train step


def prebuilt_batches(
    drawings: Any, cfg: TrainConfig, batch: int, count: int, pin: bool
) -> list[Batch]:
    """`count` augmented batches of `batch` drawings, length-bucketed as `TrainBatches` cuts a
    pool (similar lengths per batch, little padding), in random order; pinned for fast copies."""
    rng = np.random.default_rng(batch)
    encoder = encoder_for(cfg)
    n = batch * count
    index = rng.choice(len(drawings), n, replace=n > len(drawings))
    lengths = np.minimum(drawings.lengths[index], encoder.max_points)
    groups = np.array_split(index[np.argsort(lengths, kind="stable")], count)
    augment = Augment.from_train_cfg(cfg)
    out = []
    for i in rng.permutation(count):
        x, lengths_t, labels = make_batch(
            drawings.take(groups[i]), encoder, augment, np.random.default_rng([batch, int(i)])
        )
        if pin:
            x, labels = x.pin_memory(), labels.pin_memory()
        out.append((x, lengths_t, labels))
    return out


def _train_step(
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    cfg: TrainConfig,
    device: torch.device,
    amp: torch.dtype | None,
    batch: Batch,
) -> torch.Tensor:
    """One optimiser step exactly as `Trainer._step` takes it (lengths stay on the CPU)."""
    x, lengths, labels = batch
    with D.autocast(device, amp):
        logits = net(x, lengths)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss


def train_case(
    cfg: TrainConfig,
    path: str,
    batches: list[Batch],
    compiled: bool,
    device: torch.device,
    s: Settings,
) -> dict[str, Any]:
    """Samples/s of one (family, path, batch size, compile) case on pre-built batches."""
    amp = D.amp_dtype(device)
    batch = len(batches[0][2])
    row: dict[str, Any] = {
        "family": cfg.model,
        "path": path,
        "batch": batch,
        "compile": compiled,
        "amp": _amp_name(amp),
        "samples_per_s": None,
        "step_ms": None,
        "peak_mem_mib": None,
        "warmup_s": None,
        "steps": 0,
        "note": "",
    }
    if compiled:
        row["note"] = f"backend {s.compile_backend}"
    model = net = optimizer = data = None
    cuda = device.type == "cuda"
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(0)
        model = build_model(model_config(cfg, MODEL_CLASSES)).to(device).train()
        if path != "-":
            model.rnn_path = path
        net = torch.compile(model, backend=s.compile_backend) if compiled else model
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=cuda and amp == torch.float16)
        data = [
            (x.to(device, non_blocking=True), lengths, labels.to(device, non_blocking=True))
            for x, lengths, labels in batches
        ]
        if compiled and encoder_for(cfg).kind == "points":
            for x, _, _ in data:  # drawing lengths vary per batch: one graph for every T
                torch._dynamo.maybe_mark_dynamic(x, 1)

        def step(i: int) -> torch.Tensor:
            return _train_step(net, model, optimizer, scaler, cfg, device, amp, data[i % len(data)])

        # Warm-up: every pre-built shape once (compiles; cuDNN and oneDNN build a plan per
        # shape, seconds each on a CPU), and at least warmup_steps.
        warmup = max(s.warmup_steps, len(data))
        _sync(device)
        start = time.perf_counter()
        for i in range(warmup):
            step(i)
        _sync(device)
        row["warmup_s"] = time.perf_counter() - start
        check = 1 if device.type == "cpu" else 5  # clock checks sync the GPU: not every step
        steps, start = 0, time.perf_counter()
        while True:
            loss = step(warmup + steps)
            steps += 1
            if steps >= s.max_steps or steps % check == 0:
                _sync(device)
                elapsed = time.perf_counter() - start
                if steps >= s.max_steps or elapsed >= s.case_s:
                    break
        final = float(loss.item())
        row |= {
            "samples_per_s": steps * batch / elapsed,
            "step_ms": 1000 * elapsed / steps,
            "steps": steps,
        }
        if cuda:
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        if not math.isfinite(final):
            row["note"] = ", ".join(filter(None, [row["note"], f"loss {final}"]))
    except Exception as err:  # compile failures, out of memory: a note, and on to the next
        prefix = "compile failed: " if compiled else "failed: "
        row["note"] = ", ".join(filter(None, [row["note"], _error_note(prefix, err)]))
    finally:
        model = net = optimizer = data = None  # free the GPU memory before the next case
        if compiled:
            torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()
    return row


def family_paths(family: str) -> list[str]:
    return list(RNN_PATHS) if issubclass(MODELS[family], SequenceClassifier) else ["-"]


def compile_plan(families: list[str], s: Settings) -> list[tuple[str, str, int]]:
    """(family, path, batch) cases that also run compiled, most useful first: static-shape
    image models, then each sequence family's padded path (pure tensor ops inductor can fuse),
    then the fused cuDNN path (packing reads lengths on the CPU: graph breaks expected)."""
    if s.compile == "none":
        return []
    order = ["-", "padded", "fused"]
    cases = sorted(
        ((f, p) for f in families for p in family_paths(f)), key=lambda fp: order.index(fp[1])
    )
    if s.compile == "one":  # quick: prove the code path on the smallest case
        cases = [c for c in cases if c[1] == "padded"][:1] or cases[:1]
        return [(f, p, min(s.batches)) for f, p in cases]
    return [(f, p, max(s.batches)) for f, p in cases]


# ---------------------------------------------------------------- 2. the input pipeline


def pipeline_case(
    store_path: Path, cfg: TrainConfig, workers: int, seconds: float, pin: bool
) -> dict[str, Any]:
    """Drawings/s of TrainBatches through make_loader, iterated as the trainer does: a new
    loader iterator (so new worker processes) every epoch. `drawings_per_s` counts from the
    first batch on, epoch restarts included; `in_epoch_per_s` leaves the restarts out."""
    encoder = encoder_for(cfg)
    row: dict[str, Any] = {
        "input": encoder.kind,
        "image_size": encoder.image_size or None,
        "workers": workers,
        "batch": cfg.batch_size,
        "drawings_per_s": None,
        "in_epoch_per_s": None,
        "first_batch_s": None,
        "batches": 0,
        "epochs": 0,
        "note": "",
    }
    try:
        reader = DrawingStore(store_path).split("train")
        data = TrainBatches(
            store_path,
            "train",
            list(range(reader.n_blocks)),
            cfg.batch_size,
            cfg.shuffle_buffer_blocks,
            encoder,
            Augment.from_train_cfg(cfg),
            cfg.seed,
        )
        loader = make_loader(data, workers, pin)
        start = time.perf_counter()
        first: float | None = None
        drawings = batches = epoch = 0
        in_epoch_drawings, in_epoch_s = 0, 0.0
        done = False
        while not done:
            data.set_epoch(epoch)
            previous: float | None = None  # the epoch's previous batch
            for _, lengths, _ in loader:
                now = time.perf_counter()
                if first is None:
                    first = previous = now
                    row["first_batch_s"] = now - start
                    continue
                if previous is not None:
                    in_epoch_drawings += len(lengths)
                    in_epoch_s += now - previous
                previous = now
                drawings += len(lengths)
                batches += 1
                if now - first >= seconds:
                    done = True
                    break
            epoch += 1
        elapsed = time.perf_counter() - first
        in_epoch = in_epoch_drawings / in_epoch_s if in_epoch_s else None
        row |= {
            "drawings_per_s": drawings / elapsed,
            "in_epoch_per_s": in_epoch,
            "batches": batches,
            "epochs": epoch,
        }
    except Exception as err:
        row["note"] = _error_note("failed: ", err)
    return row


# ---------------------------------------------------------------- 3. the training loop


def loop_case(store_path: Path, work: Path, cfg: TrainConfig, s: Settings) -> dict[str, Any]:
    """`pipeline.train.run` for `s.loop_s` seconds: one validation, at the end."""
    from pipeline.train import run as train_run

    cfg = dataclasses.replace(
        cfg,
        time_budget_s=s.loop_s,
        epochs=10_000,
        batch_size=s.loop_batch,
        workers=s.loop_workers,
        processes=1,
        val_every_steps=0,
        val_every_s=1e6,
        checkpoint_every_s=0,
    )
    row: dict[str, Any] = {
        "family": cfg.model,
        "batch": cfg.batch_size,
        "workers": cfg.workers,
        "budget_s": s.loop_s,
        "steps": None,
        "time_s": None,
        "steps_per_s": None,
        "samples_per_s": None,
        "val_map3": None,
        "note": "",
    }
    threads = torch.get_num_threads()
    paths = paths_reading(store_path, work / f"loop-{cfg.model}").for_member(cfg.model)
    try:
        with _quiet() as log:
            try:
                summary = train_run(cfg, paths, log_live=False).summary
            except BaseException:
                sys.stderr.write(log.getvalue()[-3000:])
                raise
        row |= {
            "steps": summary["steps"],
            "time_s": summary["time_s"],
            "steps_per_s": summary["steps"] / summary["time_s"],
            "samples_per_s": summary["train/samples_per_s"],
            "val_map3": summary["val/map3"],
        }
    except Exception as err:
        row["note"] = _error_note("failed: ", err)
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own
    return row


# ---------------------------------------------------------------- 4. DDP


def ddp_run(
    store_path: Path,
    work: Path,
    params: dict[str, Any],
    device: torch.device,
    s: Settings,
    ddp_cpu: bool,
    stage: bool | None = None,
) -> dict[str, Any]:
    """The train stage under torchrun on every GPU (NCCL), or 2 gloo processes on the CPU."""
    if device.type == "cuda":
        n, backend = torch.cuda.device_count(), "nccl"
    else:
        n, backend = (2 if ddp_cpu else 1), "gloo"
    result: dict[str, Any] = {
        "processes": n,
        "backend": backend,
        "member": DDP_MEMBER,
        "budget_s": s.ddp_s,
        "steps": None,
        "time_s": None,
        "samples_per_s": None,
        "wall_s": None,
        "command": None,
    }
    if n < 2:
        hint = "" if device.type == "cuda" else "; --ddp-cpu runs 2 gloo processes"
        return result | {"status": f"skipped ({n} device{hint})"}
    root = work / "ddp"
    (root / "data" / "processed").mkdir(parents=True)
    (root / "data" / "processed" / "drawings.zarr").symlink_to(store_path.resolve())
    p = copy.deepcopy(params)
    gpu = device.type == "cuda"
    workers = max(0, min(s.loop_workers, (os.cpu_count() or 1) // n - 1)) if gpu else 0
    p["train"] |= {
        "time_budget_s": s.ddp_s,
        "epochs": 10_000,
        "batch_size": s.loop_batch,
        "workers": workers,
        "threads": 0 if gpu else 1,
        "processes": n,
        "val_every_steps": 0,
        "val_every_s": 1e6,
        "checkpoint_every_s": 0,
    }
    p["ensemble"] = {**p["ensemble"], "members": [DDP_MEMBER]}
    p["members"] = {DDP_MEMBER: {"model": DDP_MEMBER}}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    # The stage itself when dvclive is there (it logs rank 0's summary); else this module's
    # --ddp-worker, which calls the same `pipeline.train.run` without dvclive.
    if stage is None:
        stage = importlib.util.find_spec("dvclive") is not None
    entry = (
        ["-m", "pipeline.train", "--params", "params.yaml", "--member", DDP_MEMBER]
        if stage
        else ["-m", "benchmarks.gpu_check", "--ddp-worker", "params.yaml"]
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        *entry,
    ]
    env = _env()
    if device.type == "cpu":
        env |= {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    else:
        torch.cuda.empty_cache()  # this process's cached blocks on GPU 0, which rank 0 uses
    result["command"] = " ".join(["python", *cmd[1:]])
    start = time.perf_counter()
    code, err = _run_bounded(cmd, root, env, s.ddp_s + 120, capture=True)
    result["wall_s"] = time.perf_counter() - start
    summary_path = (
        root / "dvclive" / DDP_MEMBER / "metrics.json" if stage else root / "ddp_summary.json"
    )
    if code != 0 or not summary_path.is_file():
        sys.stderr.write(err[-4000:])
        tail = (err.strip().splitlines() or ["no output"])[-1][:200]
        return result | {"status": f"failed ({code}): {tail}"}
    summary = flatten(json.loads(summary_path.read_text()), sep="/")
    return result | {
        "status": "ok",
        "steps": summary["steps"],
        "time_s": summary["time_s"],
        "samples_per_s": summary["train/samples_per_s"],
    }


def ddp_worker(params_path: Path) -> None:
    """One torchrun rank of the DDP check without dvclive: the train stage's `run`."""
    from pipeline.common.files import write_json
    from pipeline.train import member_configs
    from pipeline.train import run as train_run

    cfg = member_configs(params_path, DDP_MEMBER)[DDP_MEMBER]
    result = train_run(cfg, Paths.under(".").for_member(DDP_MEMBER), log_live=False)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path("ddp_summary.json"), result.summary)


# ---------------------------------------------------------------- the whole check


class TrainSteps:
    """What the train-step cases share: the device, the settings, each family's config, the
    store's training drawings and the pre-built batches (one set per input and batch size)."""

    def __init__(
        self, dev: torch.device, s: Settings, configs: dict[str, TrainConfig], store_path: Path
    ) -> None:
        self.dev, self.s, self.configs = dev, s, configs
        self.drawings = DrawingStore(store_path).split("train").read()
        self._batches: dict[tuple[str, int, int], list[Batch]] = {}

    def batches(self, cfg: TrainConfig, batch: int) -> list[Batch]:
        encoder = encoder_for(cfg)
        key = (encoder.kind, encoder.image_size, batch)
        if key not in self._batches:
            self._batches[key] = prebuilt_batches(
                self.drawings, cfg, batch, self.s.prebuilt, self.dev.type == "cuda"
            )
        return self._batches[key]

    def case(self, family: str, path: str, batch: int, compiled: bool) -> dict[str, Any]:
        cfg = self.configs[family]
        row = train_case(cfg, path, self.batches(cfg, batch), compiled, self.dev, self.s)
        rate = f"{row['samples_per_s']:,.0f} samples/s" if row["samples_per_s"] else "-"
        _say(
            f"train step {family}/{path} batch {batch}"
            f"{' compiled' if compiled else ''}: {rate} {row['note']}"
        )
        return row


def _setup(
    dev: torch.device, s: Settings, families: list[str], preset: str | None
) -> tuple[dict[str, Any], dict[str, TrainConfig]]:
    """Params and each family's config; cuDNN and torch threads as the trainer sets them."""
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = False  # as the trainer: lengths vary per batch
    params = load_repo_params(preset)
    configs = {f: with_image_size(c, s) for f, c in family_configs(params, families).items()}
    # torch threads as `train.threads` sets them (0 = every core), so a shared CPU is not
    # oversubscribed; the trainer (step 3) sets its own, and this is restored after it.
    threads = next(iter(configs.values())).threads
    torch.set_num_threads(D.torch_threads(threads, 0, D.Dist(0, 1, 0)))
    return params, configs


def _skipped_compile(family: str, path: str, batch: int, amp: str, note: str) -> dict[str, Any]:
    return {
        "family": family,
        "path": path,
        "batch": batch,
        "compile": True,
        "amp": amp,
        "samples_per_s": None,
        "step_ms": None,
        "peak_mem_mib": None,
        "warmup_s": None,
        "steps": 0,
        "note": note,
    }


def compile_cases(
    dev: torch.device,
    s: Settings,
    families: list[str],
    preset: str | None,
    store_path: Path,
    work: Path,
    seconds_left: float,
) -> list[dict[str, Any]]:
    """The compiled train-step cases, in a child process given the time left of the budget
    (`--compile-worker`): a compile that overruns is killed and a crash stays there."""
    plan = compile_plan(families, s)
    if not plan:
        return []
    amp = _amp_name(D.amp_dtype(dev))
    box = f"skipped (time box: --budget-s {s.budget_s:.0f})"
    if seconds_left < s.compile_cost_s:
        return [_skipped_compile(f, p, b, amp, box) for f, p, b in plan]
    spec = {
        "device": str(dev),
        "settings": dataclasses.asdict(s),
        "families": families,
        "preset": preset,
        "store": str(store_path),
        "cases": plan,
        "rows": str(work / "compile_rows.jsonl"),
    }
    (work / "compile_spec.json").write_text(json.dumps(spec))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--compile-worker",
        str(work / "compile_spec.json"),
    ]
    status = _run_bounded(cmd, REPO_DIR, _env(), seconds_left, capture=False)[0]
    rows_path = Path(spec["rows"])
    rows = (
        [json.loads(line) for line in rows_path.read_text().splitlines()]
        if rows_path.is_file()
        else []
    )
    done = {(r["family"], r["path"], r["batch"]) for r in rows}
    missing = [tuple(c) for c in plan if tuple(c) not in done]
    for i, (f, p, b) in enumerate(missing):
        note = box
        if i == 0 and status == "timeout":
            note = f"stopped: time box (--budget-s {s.budget_s:.0f}) reached while running it"
        elif i == 0 and status != 0:
            note = f"compile process died ({status}) in this case"
        rows.append(_skipped_compile(f, p, b, amp, note))
    return rows


def compile_worker(spec_path: Path) -> None:
    """The child of `compile_cases`: each planned case, one JSON line as it finishes."""
    spec = json.loads(spec_path.read_text())
    raw = spec["settings"]
    s = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    dev = pick_device(spec["device"])
    _, configs = _setup(dev, s, spec["families"], spec["preset"])
    steps = TrainSteps(dev, s, configs, Path(spec["store"]))
    with open(spec["rows"], "a") as out:
        for family, path, batch in spec["cases"]:
            row = steps.case(family, path, batch, True)
            out.write(json.dumps(_rounded(row)) + "\n")
            out.flush()


def _env() -> dict[str, str]:
    """This environment, with the repo importable from any working folder."""
    path = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))
    return os.environ | {"PYTHONPATH": path}


def _run_bounded(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, capture: bool
) -> tuple[int | str, str]:
    """Run `cmd` in its own session; past `timeout`, kill its whole process group (torchrun's
    ranks, inductor's compile workers). Returns (exit code or "timeout", its stderr if kept)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err or ""
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return "timeout", err or ""


def run(
    device: str = "auto",
    quick: bool = False,
    families: list[str] | None = None,
    out: Path | None = DEFAULT_OUT,
    source: str = "auto",
    ddp_cpu: bool = False,
    preset: str | None = None,
    print_tables: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Run every step; returns the report (also written to `out` unless None).

    `overrides` replace fields of `Settings` (e.g. `batches=(32,)`, `compile="none"`).
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    s = dataclasses.replace(settings_for(dev, quick), **overrides)
    families = list(families or MODELS)
    unknown = [f for f in families if f not in MODELS]
    if unknown:
        raise SystemExit(f"error: unknown families {unknown}; known: {list(MODELS)}")
    params, configs = _setup(dev, s, families, preset)
    report: dict[str, Any] = {
        "env": environment(dev),
        "quick": quick,
        "preset": preset,
        "settings": dataclasses.asdict(s),
        "train_step": [],
        "input_pipeline": [],
        "loop": [],
        "ddp": None,
        "sections_s": {},
    }
    sections = report["sections_s"]
    save: Callable[[], None] = (lambda: _write(out, report)) if out is not None else lambda: None

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        _say(f"building a store ({source}) ...")
        report["store"] = st = build_store(work, source, s, params)
        store_path = Path(st["path"])
        sections["store"] = time.perf_counter() - t0
        _say(
            f"store: {st['source']}, {st['classes']} classes, {st['train']:,} train drawings, "
            f"{st['blocks']} blocks, {st['build_s']:.1f} s"
        )
        save()

        # 1. The train step, compile off (the compiled cases come last, budget allowing).
        steps = TrainSteps(dev, s, configs, store_path)
        for family in families:
            for path in family_paths(family):
                for batch in s.batches:
                    report["train_step"].append(steps.case(family, path, batch, False))
                    save()
        del steps  # its pinned batches
        sections["train_step"] = time.perf_counter() - t0 - sum(sections.values())

        # 2. The input pipeline, per input kind.
        kinds: dict[str, TrainConfig] = {}
        for family in families:
            kinds.setdefault(encoder_for(configs[family]).kind, configs[family])
        for kind, cfg in kinds.items():
            cfg = dataclasses.replace(cfg, batch_size=s.loop_batch)
            for workers in s.workers:
                row = pipeline_case(store_path, cfg, workers, s.pipeline_s, dev.type == "cuda")
                row["families"] = [f for f in families if encoder_for(configs[f]).kind == kind]
                report["input_pipeline"].append(row)
                rate = f"{row['drawings_per_s']:,.0f}" if row["drawings_per_s"] else "-"
                _say(f"input pipeline {kind} workers {workers}: {rate} drawings/s {row['note']}")
                save()

        sections["input_pipeline"] = time.perf_counter() - t0 - sum(sections.values())

        # 3. The real training loop.
        for family in families:
            row = loop_case(store_path, work, configs[family], s)
            report["loop"].append(row)
            rate = f"{row['steps_per_s']:.2f} steps/s" if row["steps_per_s"] else "-"
            _say(f"training loop {family}: {rate} {row['note']}")
            save()

        sections["loop"] = time.perf_counter() - t0 - sum(sections.values())

        # 4. DDP.
        _say("DDP ...")
        report["ddp"] = ddp_run(store_path, work, params, dev, s, ddp_cpu)
        _say(f"DDP: {report['ddp']['status']}")
        sections["ddp"] = time.perf_counter() - t0 - sum(sections.values())
        save()

        # 1b. The compiled train-step cases, in the time left.
        left = s.budget_s - (time.perf_counter() - t0)
        report["train_step"] += compile_cases(dev, s, families, preset, store_path, work, left)
        sections["compile"] = time.perf_counter() - t0 - sum(sections.values())
        order = {fp: i for i, fp in enumerate((f, p) for f in families for p in family_paths(f))}
        report["train_step"].sort(
            key=lambda r: (order[r["family"], r["path"]], r["batch"], r["compile"])
        )
        report["wall_s"] = time.perf_counter() - t0
        save()
    if print_tables:
        print(tables(report))
    return report


# ---------------------------------------------------------------- tables


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def tables(report: dict[str, Any]) -> str:
    env, st = report["env"], report["store"]
    where = env.get("gpu") or f"CPU ({env['cpu_count']} cores, {env['torch_threads']} threads)"
    lines = [
        f"## GPU check: {where}, torch {env['torch']} (CUDA {env['torch_cuda']}), "
        f"amp {env['amp']}{', quick' if report['quick'] else ''}",
        f"store: {st['source']}, {st['classes']} classes, {st['train']:,} train drawings, "
        f"{st['points_mean']:.0f} points per drawing (real data: {REAL_POINTS_MEAN:.0f}); "
        f"models with {MODEL_CLASSES} classes; wall {report.get('wall_s', 0):.0f} s ("
        + ", ".join(f"{k} {v:.0f}" for k, v in report.get("sections_s", {}).items())
        + ")",
        "",
        "| family | path | batch | compile | samples/s | step ms | peak mem | note |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in report["train_step"]:
        mem = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:,.0f} MiB"
        lines.append(
            f"| {r['family']} | {r['path']} | {r['batch']} | {'on' if r['compile'] else 'off'} "
            f"| {_num(r['samples_per_s'])} | {_num(r['step_ms'], ',.1f')} | {mem} "
            f"| {r['note']} |"
        )
    lines += [
        "",
        "| input pipeline | workers | batch | drawings/s | within epochs | epochs "
        "| first batch s | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["input_pipeline"]:
        kind = r["input"] + (f" {r['image_size']}px" if r["image_size"] else "")
        kind += f" ({', '.join(r.get('families', []))})"
        lines.append(
            f"| {kind} | {r['workers']} | {r['batch']} | {_num(r['drawings_per_s'])} "
            f"| {_num(r['in_epoch_per_s'])} | {r['epochs']} "
            f"| {_num(r['first_batch_s'], '.2f')} | {r['note']} |"
        )
    lines += [
        "",
        "| training loop | batch | workers | steps | time s | steps/s | samples/s | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["loop"]:
        lines.append(
            f"| {r['family']} | {r['batch']} | {r['workers']} | {_num(r['steps'])} "
            f"| {_num(r['time_s'], '.1f')} | {_num(r['steps_per_s'], '.2f')} "
            f"| {_num(r['samples_per_s'])} | {r['note']} |"
        )
    ddp = report["ddp"]
    lines += [
        "",
        "| DDP | processes | backend | steps | time s | samples/s | status |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
        f"| {ddp['member']} | {ddp['processes']} | {ddp['backend']} | {_num(ddp['steps'])} "
        f"| {_num(ddp['time_s'], '.1f')} | {_num(ddp['samples_per_s'])} "
        f"| {ddp['status']} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU if any) | cuda | cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes: a CPU in < 2 min")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report")
    parser.add_argument("--families", help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--source", choices=("auto", "kaggle16", "synthetic"), default="auto")
    parser.add_argument("--preset", help="measure with a configs/<NAME>.yaml preset's sizes")
    parser.add_argument("--image-size", type=int, help="cnn image side (GPU default 128)")
    parser.add_argument("--compile", choices=("none", "one", "all"), help="compiled cases")
    parser.add_argument("--budget-s", type=float, help="run time target (drops compile cases)")
    parser.add_argument("--loop-s", type=float, help="each training-loop run's time budget")
    parser.add_argument("--ddp-cpu", action="store_true", help="on the CPU: DDP with 2 gloo ranks")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)  # torchrun's entry
    parser.add_argument("--compile-worker", type=Path, help=argparse.SUPPRESS)  # compile cases
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker)
        return
    if args.compile_worker:
        compile_worker(args.compile_worker)
        return
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer (step 3) picks a GPU if it sees one
    overrides = {
        k: v
        for k, v in (
            ("image_size", args.image_size),
            ("compile", args.compile),
            ("budget_s", args.budget_s),
            ("loop_s", args.loop_s),
        )
        if v is not None
    }
    families = args.families.split(",") if args.families else None
    run(
        args.device,
        args.quick,
        families,
        args.out,
        args.source,
        args.ddp_cpu,
        args.preset,
        **overrides,
    )


if __name__ == "__main__":
    main()
