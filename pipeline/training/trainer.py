"""The training loop: batches in, one optimiser step each, a validation at a steady cadence.

AdamW with the schedule of `pipeline.training.schedule`, gradient clipping every step, label
smoothing, autocast on GPUs. The run's length is `epochs` or, when `time_budget_s` is set, the
budget alone (training time across resumes, validation included). Validation, the dvclive row,
the best-checkpoint choice and a `last.pt` happen every `val_every_steps` steps and/or every
`val_every_s` seconds (each epoch's end when both are 0), and always at the end: curves have
points even when one epoch outlasts the whole budget. The step loop reads nothing back from the
device except every `SYNC_EVERY` steps (the progress bar's loss), so a GPU is never kept waiting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.common.config import TrainConfig, to_dict
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.common.progress import progress
from pipeline.common.runtime import set_seed
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models import build_model, encoder_for, model_config
from pipeline.training import distributed as D
from pipeline.training.batches import TrainBatches, eval_batches, make_loader, shard_blocks
from pipeline.training.checkpoints import Checkpoints, TrainState, data_digests, fingerprint
from pipeline.training.live import LiveLog
from pipeline.training.schedule import budget_steps, lr_at
from pipeline.training.validation import validate

log = logging.getLogger(__name__)

SYNC_EVERY = 25  # steps between DDP budget agreements and progress-bar loss updates


@dataclass
class TrainResult:
    model: nn.Module  # the final (not necessarily best) weights, unwrapped from DDP
    summary: dict[str, float]


class Trainer:
    def __init__(self, cfg: TrainConfig, ddp: D.Dist, paths: Paths, log_live: bool) -> None:
        self.cfg, self.ddp = cfg, ddp
        self.device = D.pick_device(ddp)
        torch.set_num_threads(D.torch_threads(cfg.threads, cfg.workers, ddp))
        set_seed(cfg.seed)

        store = DrawingStore(paths.store_path)
        self.classes = store.classes
        train_split, val_split = store.split("train"), store.split("val")
        if len(train_split) == 0:
            raise PipelineError(f"{paths.store_path} has no training drawings; check preprocess")
        if len(val_split) == 0:
            raise PipelineError(
                f"{paths.store_path} has no validation drawings; set preprocess.val_per_class > 0"
            )
        self.n_train = len(train_split)
        blocks = shard_blocks(train_split.n_blocks, ddp.rank, ddp.world_size)
        self.encoder = encoder_for(cfg)  # features (sequence models) or images (cnn)
        self.dataset = TrainBatches(
            paths.store_path,
            "train",
            blocks,
            cfg.batch_size,
            cfg.shuffle_buffer_blocks,
            self.encoder,
            Augment.from_train_cfg(cfg),
            cfg.seed,
            ddp.rank,
        )
        self.loader = make_loader(self.dataset, cfg.workers, self.device.type == "cuda")
        self._epoch_sizes: dict[int, int] = {}  # batches per epoch, agreed by every rank
        if cfg.time_budget_s > 0:  # the budget alone: a first guess, refined from the step rate
            total = self.batches_in(0)
        else:
            total = sum(self.batches_in(e) for e in range(cfg.epochs))
        self.val = eval_batches(val_split.read(), cfg.batch_size * 2, self.encoder)

        self.model_cfg = model_config(cfg, len(self.classes))
        self.model = build_model(self.model_cfg).to(self.device)
        self.net: nn.Module = self.model
        if ddp.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        torch.manual_seed(cfg.seed * 1000 + ddp.rank)  # dropout differs per rank
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.amp = D.amp_dtype(self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp == torch.float16 and self.device.type == "cuda"
        )
        self.state = TrainState(total_steps=total)
        self.fingerprint = fingerprint(cfg, store, ddp.world_size)
        self.data = data_digests(store)
        self.checkpoints = Checkpoints(paths.checkpoint_dir, paths.model_path, ddp.is_main)
        self.live_dir = paths.live_dir if log_live and ddp.is_main else None
        self.curves_path = paths.curves_path
        self._clock_start, self._elapsed_before = time.monotonic(), 0.0

    # ---- the loop -------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None = None) -> TrainResult:
        """Train (or resume) to the end; `stop_after_steps` stops early as if killed (tests)."""
        self._resume()
        st = self.state
        live = LiveLog(self.live_dir, self.curves_path, st.history)
        if st.finished:
            log.info("checkpoint says this run already finished; exporting its best model")
        self._clock_start, self._elapsed_before = time.monotonic(), st.elapsed_s
        self._new_window()
        bar = progress(
            total=st.total_steps,
            initial=st.step,
            desc="train",
            unit="step",
            disable=not self.ddp.is_main,
        )
        while not st.finished:
            if st.step >= st.total_steps or (
                self.cfg.time_budget_s <= 0 and st.epoch >= self.cfg.epochs
            ):
                st.finished = True
                break
            if self._train_epoch(bar, live, stop_after_steps):
                bar.close()
                self._tick()
                self._save_last()
                log.info("stopped after %s steps (test hook); rerun to resume", f"{st.step:,}")
                return TrainResult(self.model, {})
        if not st.history or st.history[-1]["step"] != st.step:
            self._validate(live)  # the end of the run is always a point of the curves
        bar.close()
        return TrainResult(self.model, self._finish(live))

    def batches_in(self, epoch: int) -> int:
        """Batches of `epoch` on every rank: the shortest shard's count under DDP."""
        if epoch not in self._epoch_sizes:
            (n,) = D.all_min([self.dataset.n_batches(epoch)], self.ddp, self.device)
            self._epoch_sizes[epoch] = n
        return self._epoch_sizes[epoch]

    def _train_epoch(self, bar: Any, live: LiveLog, stop_after_steps: int | None) -> bool:
        """Steps to the end of the epoch (or of the run); True if the test hook stopped it."""
        cfg, st = self.cfg, self.state
        n_batches = self.batches_in(st.epoch)
        self.dataset.set_epoch(st.epoch, st.batch)
        self.net.train()
        last_ckpt = time.monotonic()
        for x, lengths, labels in self.loader:
            if st.batch >= n_batches:
                break  # DDP: ranks stop at the shortest shard
            loss = self._step(x, lengths, labels)
            self._window["loss"] += loss.detach()
            self._window["steps"] += 1
            self._window["samples"] += len(labels)
            st.step += 1
            st.batch += 1
            bar.update()
            # One process re-estimates the budget every step (clock reads only); DDP ranks
            # agree on a broadcast estimate every SYNC_EVERY steps (and early, at 2^k).
            sync_point = st.step % SYNC_EVERY == 0 or st.step & (st.step - 1) == 0
            if self.ddp.world_size == 1 or sync_point:
                self._estimate_total(bar)
            if st.step % SYNC_EVERY == 0:
                bar.set_postfix(self._postfix(loss, n_batches), refresh=False)
            if stop_after_steps is not None and st.step >= stop_after_steps:
                return True
            if st.step >= st.total_steps:
                break
            if self._validation_due(sync_point):
                self._validate(live)
                last_ckpt = time.monotonic()
            elif 0 < cfg.checkpoint_every_s <= time.monotonic() - last_ckpt:
                self._tick()
                self._save_last()
                last_ckpt = time.monotonic()
        if st.batch >= n_batches:
            st.epoch, st.batch = st.epoch + 1, 0
            if cfg.val_every_steps == 0 and cfg.val_every_s == 0:
                self._validate(live)
        return False

    def _validation_due(self, sync_point: bool) -> bool:
        """Time for the next validation (the same answer on every DDP rank)."""
        cfg, st = self.cfg, self.state
        if self.ddp.world_size > 1 and not sync_point:
            return False
        last_step, last_time = (
            (st.history[-1]["step"], st.history[-1]["time_s"]) if st.history else (0, 0.0)
        )
        due = 0 < cfg.val_every_steps <= st.step - last_step
        due |= 0 < cfg.val_every_s <= self._tick() - last_time
        return bool(D.broadcast(int(due), self.ddp, self.device))

    def _validate(self, live: LiveLog) -> None:
        """Score the val split; log the row; keep the best model; write last.pt."""
        st, window = self.state, self._window
        train_s = max(time.monotonic() - window["start"], 1e-9)
        row = {
            "step": st.step,
            "epoch": round(st.epoch + st.batch / self.batches_in(st.epoch), 3),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train/loss": float(window["loss"].item()) / max(window["steps"], 1),
            "train/samples_per_s": window["samples"] * self.ddp.world_size / train_s,
            **validate(self.model, self.val, self.device, self.amp),
        }
        row["time_s"] = self._tick()
        st.history.append(row)
        live.log(row)
        if row["val/map3"] > st.best_map3:
            st.best_map3 = row["val/map3"]
            self.checkpoints.save_best(self.model, self._meta() | row)
        self._save_last()
        self._new_window()
        self.net.train()
        if self.ddp.is_main:
            log.info(
                "step %s (epoch %.2f)  loss %.4f  val/map3 %.4f  val/top1 %.4f  %s samples/s  %s",
                f"{st.step:,}",
                row["epoch"],
                row["train/loss"],
                row["val/map3"],
                row["val/top1"],
                f"{row['train/samples_per_s']:,.0f}",
                _clock(st.elapsed_s),
            )

    def _new_window(self) -> None:
        """Start accumulating the training figures of the next validation row."""
        self._window = {
            "loss": torch.zeros((), device=self.device),
            "steps": 0,
            "samples": 0,
            "start": time.monotonic(),
        }

    def _postfix(self, loss: torch.Tensor, n_batches: int) -> dict[str, str]:
        st, budget = self.state, self.cfg.time_budget_s
        postfix = {"epoch": f"{st.epoch + st.batch / n_batches:.2f}", "loss": f"{loss.item():.3f}"}
        if budget > 0:
            postfix["left"] = _clock(max(budget - st.elapsed_s, 0.0))
        return postfix

    def _step(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        lr = lr_at(self.state.step / max(self.state.total_steps, 1), cfg.learning_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = x.to(self.device, non_blocking=True)  # (B, T, F) features or (B, 3, S, S) images
        labels = labels.to(self.device, non_blocking=True)  # (B,)
        with D.autocast(self.device, self.amp):
            logits = self.net(x, lengths)  # (B, C); lengths stay on the CPU (no device sync)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def _tick(self) -> float:
        """Bring `state.elapsed_s` (training time across resumes) up to now; return it."""
        self.state.elapsed_s = self._elapsed_before + time.monotonic() - self._clock_start
        return self.state.elapsed_s

    def _estimate_total(self, bar: Any) -> None:
        """Total steps that fit the time budget, from the step rate so far (rank 0 decides)."""
        st = self.state
        if self.cfg.time_budget_s <= 0:
            return
        estimate = budget_steps(st.step, self._tick(), self.cfg.time_budget_s)
        st.total_steps = D.broadcast(estimate, self.ddp, self.device)
        bar.total = st.total_steps

    # ---- checkpoints and the end of the run -------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "train_cfg": to_dict(self.cfg),
            "model_cfg": self.model_cfg.to_dict(),
            "features": self.encoder.meta(),
            "fingerprint": self.fingerprint,
            "data": self.data,  # content digests of the train and val splits
        }

    def _save_last(self) -> None:
        self.checkpoints.save_last(
            self.model, self.optimizer, self.scaler, self.state, self._meta()
        )

    def _resume(self) -> None:
        ckpt = self.checkpoints.load_last(self.device, self.fingerprint)
        if ckpt is None:
            self.checkpoints.start_fresh()
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        if self.ddp.is_main:
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        else:
            torch.manual_seed(self.cfg.seed * 1000 + self.ddp.rank + self.state.step)
        st = self.state
        log.info(
            "resuming from %s: epoch %d, batch %s, step %s, %.0f s trained",
            self.checkpoints.last_path,
            st.epoch,
            f"{st.batch:,}",
            f"{st.step:,}",
            st.elapsed_s,
        )

    def _finish(self, live: LiveLog) -> dict[str, float]:
        """Export the best model and write the summary (its figures, not the last epoch's)."""
        st = self.state
        if not st.history:
            raise PipelineError("training ended before one evaluation; raise epochs or budget")
        best = max(st.history, key=lambda r: r["val/map3"])
        summary = {
            "val/map3": best["val/map3"],
            "val/top1": best["val/top1"],
            "val/top3": best["val/top3"],
            "val/loss": best["val/loss"],
            "best/step": best["step"],
            "best/epoch": best["epoch"],
            "best/time_s": round(best["time_s"], 1),
            "epochs": st.history[-1]["epoch"],
            "steps": st.step,
            "time_s": st.elapsed_s,
            "train/drawings": self.n_train,
            "train/samples_per_s": float(np.mean([r["train/samples_per_s"] for r in st.history])),
        }
        self._save_last()
        self.checkpoints.export(self.fingerprint)
        live.end(summary)
        if self.ddp.is_main:
            log.info(
                "best val/map3 %.4f (step %s, epoch %.2f) -> %s; %s steps in %s",
                best["val/map3"],
                f"{best['step']:,}",
                best["epoch"],
                self.checkpoints.model_path,
                f"{st.step:,}",
                _clock(st.elapsed_s),
            )
        return summary


def _clock(seconds: float) -> str:
    """1:02:03 or 2:03: hours, minutes and seconds for people."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
