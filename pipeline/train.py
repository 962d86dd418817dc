"""Train stage: fit the sequence model on the store's `train` split, keep the best by val MAP@3.

Inputs:  data/processed/drawings.zarr (splits `train`, `val`), params `train:`.
Outputs: models/model.pt (best by val/map3: `{"model": state_dict, "meta": {...}}`),
         checkpoints/{last,best}.pt (persist: a killed run resumes from last.pt when rerun),
         dvclive/ (per-epoch curves; metrics.json summary = the best checkpoint's figures).

    python -m pipeline.train                              # or: dvc repro train
    torchrun --nproc_per_node=4 -m pipeline.train         # DDP: NCCL on GPUs, gloo on CPU

Schedule: AdamW with linear warm-up then cosine decay over the run's progress, where progress is
steps / total steps; total steps = `epochs` x batches per epoch, or fewer when `time_budget_s` is
set (re-estimated from the measured step rate every SYNC_EVERY steps, then broadcast from rank 0
so every rank agrees). `time_budget_s` counts wall time of the training loop (validation
included) across resumes. Checkpoints are written every epoch and every `checkpoint_every_s`,
by rank 0 only, via temp file + rename. A found last.pt made with other params or data is
ignored (the run starts fresh and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.config import PARAMS_PATH, TrainConfig, load_section, to_dict
from pipeline.data import TrainBatches, eval_batches, make_loader, shard_blocks
from pipeline.errors import PipelineError
from pipeline.features import N_FEATURES, Augment, feature_meta
from pipeline.model import ModelConfig, build_model
from pipeline.paths import CHECKPOINT_DIR, DVCLIVE_DIR, MODEL_PATH, STORE_PATH
from pipeline.store import DrawingStore
from pipeline.utils import atomic_file, entrypoint, set_seed

log = logging.getLogger(__name__)

SYNC_EVERY = 25  # steps between time-budget estimates (and progress-bar loss updates)
WARMUP = 0.05  # fraction of the run spent warming the learning rate up
# Params that do not change the trained weights, so a checkpoint made with others still resumes.
_NOT_FINGERPRINTED = ("workers", "checkpoint_every_s")


@dataclass
class TrainState:
    """Where a run is; saved in last.pt so a rerun continues from here."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` already done
    step: int = 0
    elapsed_s: float = 0.0  # training time across resumes
    total_steps: int = 0  # current estimate of the run's length in steps
    best_map3: float = -1.0
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch dvclive rows


@dataclass
class TrainResult:
    model: nn.Module  # the final (not necessarily best) weights, unwrapped from DDP
    summary: dict[str, float]


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def lr_at(progress: float, peak: float) -> float:
    """Linear warm-up from peak/10, then cosine decay to peak/500."""
    if progress < WARMUP:
        return peak * (0.1 + 0.9 * progress / WARMUP)
    t = min((progress - WARMUP) / (1 - WARMUP), 1.0)
    return peak * (0.002 + 0.998 * 0.5 * (1 + math.cos(math.pi * t)))


def run(
    cfg: TrainConfig,
    store_path: Path = STORE_PATH,
    model_path: Path = MODEL_PATH,
    checkpoint_dir: Path = CHECKPOINT_DIR,
    live_dir: Path | None = DVCLIVE_DIR,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train (or resume) and return the final model plus the summary written to dvclive.

    `stop_after_steps` stops early after writing last.pt, as if killed (tests use it).
    `live_dir=None` skips dvclive.
    """
    ddp, own_group = _init_distributed()
    try:
        return _Trainer(cfg, ddp, store_path, model_path, checkpoint_dir, live_dir).fit(
            stop_after_steps
        )
    finally:
        if own_group:
            dist.destroy_process_group()


class _Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        ddp: Dist,
        store_path: Path,
        model_path: Path,
        checkpoint_dir: Path,
        live_dir: Path | None,
    ) -> None:
        self.cfg, self.ddp = cfg, ddp
        self.model_path, self.checkpoint_dir, self.live_dir = model_path, checkpoint_dir, live_dir
        self.device = _pick_device(ddp)
        cores = os.cpu_count() or 1
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world_size))
        torch.set_num_threads(cfg.threads or max(1, cores // local_world - cfg.workers))
        set_seed(cfg.seed)

        store = DrawingStore(store_path)
        self.classes = store.classes
        train_split, val_split = store.split("train"), store.split("val")
        if len(train_split) == 0:
            raise PipelineError(f"{store_path} has no training drawings; check preprocess params")
        if len(val_split) == 0:
            raise PipelineError(
                f"{store_path} has no validation drawings; set preprocess.val_per_class > 0"
            )
        self.fingerprint = _fingerprint(cfg, store, ddp.world_size)
        blocks = shard_blocks(train_split.n_blocks, ddp.rank, ddp.world_size)
        self.dataset = TrainBatches(
            store_path, "train", blocks, cfg.batch_size, cfg.shuffle_buffer_blocks,
            cfg.max_points, Augment.from_train_cfg(cfg), cfg.seed, ddp.rank,
        )  # fmt: skip
        self.loader = make_loader(self.dataset, cfg.workers, self.device.type == "cuda")
        self.epoch_batches = self._epoch_batches()
        self.val = eval_batches(val_split.read(), cfg.batch_size * 2, cfg.max_points)
        self.n_train = len(train_split)

        self.model_cfg = ModelConfig.from_train(cfg, N_FEATURES, len(self.classes))
        self.model = build_model(self.model_cfg).to(self.device)
        self.net: nn.Module = self.model
        if ddp.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        torch.manual_seed(cfg.seed * 1000 + ddp.rank)  # dropout differs per rank
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.amp_dtype = _amp_dtype(self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.state = TrainState(total_steps=sum(self.epoch_batches))

    # ---- the loop -------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None) -> TrainResult:
        cfg, st = self.cfg, self.state
        self._resume()
        live = self._open_live()
        if st.finished:
            log.info("checkpoint says this run already finished; exporting its best model")
        session_start = time.monotonic()
        elapsed_before = st.elapsed_s
        last_ckpt = time.monotonic()
        while not st.finished:
            if st.epoch >= cfg.epochs or st.step >= st.total_steps:
                st.finished = True
                break
            n_batches = self.epoch_batches[st.epoch]
            self.dataset.set_epoch(st.epoch, st.batch)
            self.net.train()
            loss_sum = torch.zeros((), device=self.device)
            n_seen, n_steps, epoch_start, stopped = 0, 0, time.monotonic(), False
            bar = tqdm(
                total=n_batches, initial=st.batch, desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
                disable=not self.ddp.is_main, leave=False, unit="batch",
            )  # fmt: skip
            for x, lengths, labels in self.loader:
                if st.batch >= n_batches:
                    break  # DDP: ranks stop at the shortest shard
                loss = self._step(x, lengths, labels)
                loss_sum += loss.detach()
                n_seen += len(labels)
                n_steps += 1
                st.step += 1
                st.batch += 1
                bar.update()
                # One process re-estimates the budget every step (clock reads only); DDP ranks
                # agree on a broadcast estimate every SYNC_EVERY steps (and early, at 2^k).
                sync_point = st.step % SYNC_EVERY == 0 or st.step & (st.step - 1) == 0
                if self.ddp.world_size == 1 or sync_point:
                    st.elapsed_s = elapsed_before + time.monotonic() - session_start
                    self._estimate_total()
                if st.step % SYNC_EVERY == 0:
                    rate = n_seen * self.ddp.world_size / (time.monotonic() - epoch_start)
                    bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{rate:,.0f}")
                if stop_after_steps is not None and st.step >= stop_after_steps:
                    stopped = True
                    break
                if st.step >= st.total_steps:
                    break
                if (
                    cfg.checkpoint_every_s > 0
                    and time.monotonic() - last_ckpt >= cfg.checkpoint_every_s
                ):
                    st.elapsed_s = elapsed_before + time.monotonic() - session_start
                    self._save_last()
                    last_ckpt = time.monotonic()
            bar.close()
            train_time = time.monotonic() - epoch_start
            st.elapsed_s = elapsed_before + time.monotonic() - session_start
            if stopped:
                self._save_last()
                log.info("stopped after %s steps (test hook); rerun to resume", f"{st.step:,}")
                return TrainResult(self.model, {})
            epoch_done = st.batch >= n_batches
            run_done = st.step >= st.total_steps
            row = {
                "train/loss": float(loss_sum.item()) / max(n_steps, 1),
                "lr": self.optimizer.param_groups[0]["lr"],
                "train/samples_per_s": n_seen * self.ddp.world_size / max(train_time, 1e-9),
                **self._evaluate(),
            }
            if epoch_done:
                st.epoch, st.batch = st.epoch + 1, 0
            st.elapsed_s = elapsed_before + time.monotonic() - session_start
            row |= {"epoch": st.epoch + st.batch / n_batches, "time_s": st.elapsed_s}
            st.history.append(row)
            st.finished = run_done or st.epoch >= cfg.epochs
            self._log_row(live, row)
            if row["val/map3"] > st.best_map3:
                st.best_map3 = row["val/map3"]
                self._save_best(row)
            self._save_last()
            last_ckpt = time.monotonic()
            if self.ddp.is_main:
                log.info(
                    "epoch %.2f  loss %.4f  val/map3 %.4f  val/top1 %.4f  %s samples/s  %.0f s",
                    row["epoch"], row["train/loss"], row["val/map3"], row["val/top1"],
                    f"{row['train/samples_per_s']:,.0f}", st.elapsed_s,
                )  # fmt: skip
        summary = self._finish(live)
        return TrainResult(self.model, summary)

    def _step(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lr = lr_at(self.state.step / max(self.state.total_steps, 1), cfg.learning_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = x.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.net(x, lengths)  # lengths stay on the CPU for packing
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        """Validation loss, MAP@3 and top-1 (every rank computes the same figures)."""
        self.model.eval()
        loss, map3, top1, n = 0.0, 0.0, 0.0, 0
        for x, lengths, labels in self.val:
            labels = labels.to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.model(x.to(self.device, non_blocking=True), lengths).float()
            loss += F.cross_entropy(logits, labels, reduction="sum")
            top3 = logits.topk(min(3, logits.shape[1]), dim=1).indices  # (B, 3)
            hit = top3 == labels[:, None]
            weights = 1.0 / torch.arange(1, top3.shape[1] + 1, device=self.device)
            map3 += (hit * weights).sum()
            top1 += hit[:, 0].sum()
            n += len(labels)
        self.model.train()
        return {
            "val/loss": float(loss) / n,
            "val/map3": float(map3) / n,
            "val/top1": float(top1) / n,
        }

    # ---- schedule and distributed agreement ------------------------------------------------

    def _epoch_batches(self) -> list[int]:
        counts = torch.tensor([self.dataset.n_batches(e) for e in range(self.cfg.epochs)])
        if self.ddp.world_size > 1:
            counts = counts.to(self._collective_device())
            dist.all_reduce(counts, op=dist.ReduceOp.MIN)
        return [int(c) for c in counts.cpu()]

    def _estimate_total(self) -> None:
        """Total steps that fit the time budget, from the step rate so far (rank 0 decides)."""
        st, budget = self.state, self.cfg.time_budget_s
        if budget <= 0:
            return
        by_epochs = sum(self.epoch_batches)
        estimate = st.step if st.elapsed_s >= budget else int(st.step * budget / st.elapsed_s)
        estimate = max(min(estimate, by_epochs), st.step)
        if self.ddp.world_size > 1:
            value = torch.tensor([estimate], device=self._collective_device())
            dist.broadcast(value, src=0)
            estimate = int(value.item())
        st.total_steps = estimate

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    # ---- checkpoints, resume and logging ----------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "train_cfg": to_dict(self.cfg),
            "model_cfg": self.model_cfg.to_dict(),
            "features": feature_meta(self.cfg.max_points),
            "fingerprint": self.fingerprint,
        }

    def _save_last(self) -> None:
        if not self.ddp.is_main:
            return
        st = self.state
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": {k: getattr(st, k) for k in TrainState.__dataclass_fields__},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "meta": self._meta(),
        }
        _save(ckpt, self.checkpoint_dir / "last.pt")

    def _save_best(self, row: dict[str, float]) -> None:
        if not self.ddp.is_main:
            return
        meta = self._meta() | {k: v for k, v in row.items()} | {"step": self.state.step}
        _save({"model": self.model.state_dict(), "meta": meta}, self.checkpoint_dir / "best.pt")
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.checkpoint_dir / "best.pt", self.model_path)

    def _resume(self) -> None:
        path = self.checkpoint_dir / "last.pt"
        if not path.is_file():
            return
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:
            log.warning("cannot read %s (%s); starting fresh", path, err)
            return
        if ckpt["meta"].get("fingerprint") != self.fingerprint:
            log.warning("%s was made with other params or data; starting fresh", path)
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        for key, value in ckpt["state"].items():
            setattr(self.state, key, value)
        if self.ddp.is_main:
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        else:
            torch.manual_seed(self.cfg.seed * 1000 + self.ddp.rank + self.state.step)
        st = self.state
        log.info(
            "resuming from %s: epoch %d, batch %s, step %s, %.0f s trained",
            path, st.epoch, f"{st.batch:,}", f"{st.step:,}", st.elapsed_s,
        )  # fmt: skip

    def _open_live(self) -> Any:
        if self.live_dir is None or not self.ddp.is_main:
            return None
        from dvclive import Live

        # dvcyaml=None, save_dvc_exp=False: inside `dvc repro`/`dvc exp run` dvclive must not
        # write its own dvc.yaml or create experiments; dvc.yaml declares its outputs.
        live = Live(str(self.live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in self.state.history:  # a resumed run replays its curves (dvc deleted them)
            self._log_row(live, row)
        return live

    def _log_row(self, live: Any, row: dict[str, float]) -> None:
        if live is None:
            return
        for name, value in row.items():
            live.log_metric(name, value)
        live.next_step()

    def _finish(self, live: Any) -> dict[str, float]:
        """Export the best model and write the summary (its figures, not the last epoch's)."""
        st = self.state
        if not st.history:
            raise PipelineError("training ended before one evaluation; raise epochs or budget")
        best = max(st.history, key=lambda r: r["val/map3"])
        last = st.history[-1]
        summary = {
            "val/map3": best["val/map3"],
            "val/top1": best["val/top1"],
            "val/loss": best["val/loss"],
            "best_epoch": best["epoch"],
            "epochs": last["epoch"],
            "steps": st.step,
            "time_s": st.elapsed_s,
            "train/drawings": self.n_train,
            "train/samples_per_s": float(np.mean([r["train/samples_per_s"] for r in st.history])),
        }
        self._save_last()
        if self.ddp.is_main:
            best_path = self.checkpoint_dir / "best.pt"
            self.model_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best_path, self.model_path)
            if live is not None:
                live.summary = {**summary, "step": live.step}
                live.end()
            log.info(
                "best val/map3 %.4f (epoch %.2f) -> %s; %s steps in %.0f s",
                best["val/map3"], best["epoch"], self.model_path, f"{st.step:,}", st.elapsed_s,
            )  # fmt: skip
        return summary


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def _fingerprint(cfg: TrainConfig, store: DrawingStore, world_size: int) -> str:
    params = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_FINGERPRINTED}
    data = {k: store.attrs.get(k) for k in ("classes", "counts", "params")}
    blob = json.dumps([params, data, world_size], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _init_distributed() -> tuple[Dist, bool]:
    """Join the torchrun process group if WORLD_SIZE > 1; returns (info, we created the group)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(0, 1, 0), False
    own = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        own = True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), own


def _pick_device(ddp: Dist) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(ddp.local_rank)
        torch.backends.cudnn.benchmark = False  # lengths vary per batch; autotuning would thrash
        return torch.device("cuda", ddp.local_rank)
    return torch.device("cpu")


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a grad scaler); full precision on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@entrypoint
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=PARAMS_PATH)
    args = parser.parse_args(argv)
    run(load_section("train", TrainConfig, args.params))


if __name__ == "__main__":
    main()
