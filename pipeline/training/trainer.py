"""The training loop: batches in, one optimiser step each, a validation at a steady cadence.

AdamW with the schedule of `pipeline.training.schedule`, gradient clipping every step, label
smoothing, autocast on GPUs (`pipeline.training.step`). The run's length is `epochs` or, when
`time_budget_s` is set, the budget alone (training time across resumes, validation included).
Validation, the dvclive row and the best-checkpoint choice happen every `val_every_steps` steps
and/or every `val_every_s` seconds (each epoch's end when both are 0), and always at the end:
curves have points even when one epoch outlasts the whole budget. The resumable `last.pt` is
written every `checkpoint_every_s` (each epoch's end when 0) and at the end.

The step loop reads nothing back from the device except every `SYNC_EVERY` steps (the progress
bar's loss; under DDP the ranks' agreement on the budget and the next validation), so a GPU is
never kept waiting; `tests/test_sync.py` counts it. The time spent validating and writing
checkpoints is measured and reported as `time/val_share` (of the run's time); a cadence that
spends over `VAL_SHARE_WARN` of it says so once, naming the setting to change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.common.progress import progress
from pipeline.common.runtime import set_seed
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import model_meta
from pipeline.models.members import MemberConfig
from pipeline.training import distributed as D
from pipeline.training.batches import (
    TrainBatches,
    eval_batches,
    make_loader,
    shard_blocks,
    worker_death,
)
from pipeline.training.checkpoints import Checkpoints, TrainState, data_digests, fingerprint
from pipeline.training.live import LiveLog
from pipeline.training.schedule import budget_steps, lr_at
from pipeline.training.step import TrainStep
from pipeline.training.validation import validate

log = logging.getLogger(__name__)

SYNC_EVERY = 25  # steps between DDP budget agreements and progress-bar loss updates
VAL_SHARE_WARN = 0.1  # validation + checkpoints over this share of the time: say so


@dataclass
class TrainResult:
    model: nn.Module  # the final (not necessarily best) weights, unwrapped from DDP
    summary: dict[str, float]


class Trainer:
    def __init__(
        self,
        member: MemberConfig,
        ddp: D.Dist,
        paths: Paths,
        log_live: bool,
        device: torch.device | None = None,
    ) -> None:
        """`device`: where to train (default: this rank's GPU, else the CPU); tests pass `meta`
        to count host read-backs without computing anything."""
        cfg = member.train
        self.member, self.cfg, self.ddp = member, cfg, ddp
        self.device = device or D.pick_device(ddp)
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
        self.encoder = member.encoder()  # features (sequence models) or images (cnn)
        self.dataset = TrainBatches(
            paths.store_path,
            "train",
            shard_blocks(train_split.n_blocks, ddp.rank, ddp.world_size),
            cfg.batch_size,
            cfg.shuffle_buffer_blocks,
            self.encoder,
            Augment.from_train(cfg),
            cfg.seed,
            ddp.rank,
            cfg.class_balance,
        )
        self.loader = make_loader(self.dataset, cfg.workers, self.device.type == "cuda")
        self._epoch_sizes: dict[int, int] = {}  # batches per epoch, agreed by every rank
        if cfg.time_budget_s > 0:  # the budget alone: a first guess, refined from the step rate
            total = self.batches_in(0)
        else:
            total = sum(self.batches_in(e) for e in range(cfg.epochs))
        self.val = eval_batches(val_split.read(), cfg.batch_size * 2, self.encoder)

        # Images have one shape: NHWC is what cuDNN's convolutions run fastest in.
        channels_last = member.family.fixed_shape and self.device.type == "cuda"
        self.model = member.build(len(self.classes)).to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        net: nn.Module = self.model
        if ddp.world_size > 1:
            # No device_ids: DDP would copy every input to the GPU, the host-side lengths too,
            # which the fused RNN path then reads back. Inputs are moved by the step instead.
            net = nn.parallel.DistributedDataParallel(self.model)
        torch.manual_seed(cfg.seed * 1000 + ddp.rank)  # dropout differs per rank
        self.step = TrainStep(self.model, cfg, self.device, net, channels_last)
        self.state = TrainState(total_steps=total)
        self.history: list[dict[str, float]] = []  # validation rows (history.jsonl)
        self.fingerprint = fingerprint(member, store, ddp.world_size)
        self.data = data_digests(store)
        self.checkpoints = Checkpoints(paths.checkpoint_dir, paths.model_path, ddp.is_main)
        self.live_dir = paths.live_dir if log_live and ddp.is_main else None
        self.curves_path = paths.curves_path
        self._clock_start, self._elapsed_before = time.monotonic(), 0.0
        self._last_ckpt = time.monotonic()
        self._warned = False

    # ---- the loop -------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None = None) -> TrainResult:
        """Train (or resume) to the end; `stop_after_steps` stops early as if killed (tests)."""
        self._resume()
        st = self.state
        live = LiveLog(self.live_dir, self.curves_path, self.history)
        if st.finished:
            log.info("checkpoint says this run already finished; exporting its best model")
        bar = progress(
            total=st.total_steps,
            initial=st.step,
            desc="train",
            unit="step",
            disable=not self.ddp.is_main,
        )
        if self.run_steps(stop_after_steps, bar, live):
            bar.close()
            self._save_last()
            log.info("stopped after %s steps (test hook); rerun to resume", f"{st.step:,}")
            return TrainResult(self.model, {})
        if not self.history or self.history[-1]["step"] != st.step:
            self._validate(live)  # the end of the run is always a point of the curves
        bar.close()
        return TrainResult(self.model, self._finish(live))

    def run_steps(
        self, stop_after_steps: int | None = None, bar: Any = None, live: LiveLog | None = None
    ) -> bool:
        """Step to the end of the run (or `stop_after_steps`); True if that hook stopped it."""
        st = self.state
        bar = bar or progress(total=st.total_steps, disable=True)
        live = live or LiveLog(None, self.curves_path, [])
        self._clock_start, self._elapsed_before = time.monotonic(), st.elapsed_s
        self._last_ckpt = time.monotonic()
        self._new_window()
        while not st.finished:
            if st.step >= st.total_steps or (
                self.cfg.time_budget_s <= 0 and st.epoch >= self.cfg.epochs
            ):
                st.finished = True
                break
            if self._train_epoch(bar, live, stop_after_steps):
                return True
        return False

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
        self.step.net.train()
        for x, lengths, labels in self._batches():
            if st.batch >= n_batches:
                break  # DDP: ranks stop at the shortest shard
            lr = lr_at(st.step / max(st.total_steps, 1), cfg.learning_rate)
            loss = self.step(x, lengths, labels, lr)  # a device tensor: never read here
            self._window["loss"] += loss
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
            if 0 < cfg.checkpoint_every_s <= time.monotonic() - self._last_ckpt:
                self._save_last()
        if st.batch >= n_batches:
            st.epoch, st.batch = st.epoch + 1, 0
            if cfg.val_every_steps == 0 and cfg.val_every_s == 0:
                self._validate(live)
            if cfg.checkpoint_every_s == 0:
                self._save_last()
        return False

    def _batches(self) -> Any:
        """The loader's batches; a worker killed by the system is one line saying what to do."""
        try:
            yield from self.loader
        except RuntimeError as err:
            if (death := worker_death(err)) is None:
                raise
            raise death from None

    def _validation_due(self, sync_point: bool) -> bool:
        """Time for the next validation (the same answer on every DDP rank)."""
        cfg, st = self.cfg, self.state
        if self.ddp.world_size > 1 and not sync_point:
            return False
        last = self.history[-1] if self.history else {"step": 0, "time_s": 0.0}
        due = 0 < cfg.val_every_steps <= st.step - last["step"]
        due |= 0 < cfg.val_every_s <= self._tick() - last["time_s"]
        return bool(D.broadcast(int(due), self.ddp, self.device))

    def _validate(self, live: LiveLog) -> None:
        """Score the val split; log the row; keep the best model."""
        st, window = self.state, self._window
        started = time.monotonic()
        train_s = max(started - window["start"], 1e-9)
        row = {
            "step": st.step,
            "epoch": round(st.epoch + st.batch / self.batches_in(st.epoch), 3),
            "lr": self.step.optimizer.param_groups[0]["lr"],
            "train/loss": float(window["loss"].item()) / max(window["steps"], 1),
            "train/samples_per_s": window["samples"] * self.ddp.world_size / train_s,
            **validate(self.step.scored, self.val, self.device, self.step.amp),
        }
        row["time_s"] = self._tick()
        self.history.append(row)
        self.checkpoints.append_history(row)
        st.n_rows = len(self.history)
        live.log(row)
        if row["val/map3"] > st.best_map3:
            st.best_map3, st.best = row["val/map3"], row
            self.checkpoints.save_best(self.step.scored, self._meta() | row)
        spent = time.monotonic() - started
        st.val_s += spent
        # The run's share so far, as `time/val_share` reports it: a window's own share would
        # warn at the end, whose forced validation follows a few steps only.
        self._tick()
        self._check_cadence(
            st.val_share,
            "validation",
            "train.val_every_steps" if self.cfg.val_every_steps else "train.val_every_s",
        )
        self._new_window()
        self.step.net.train()
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

    def _check_cadence(self, share: float, what: str, setting: str) -> None:
        """Warn once when `what` takes more than VAL_SHARE_WARN of the time, naming `setting`."""
        if share <= VAL_SHARE_WARN or self._warned or not self.ddp.is_main:
            return
        self._warned = True
        if setting == "train.val_every_s" and not self.cfg.val_every_s:
            setting = "train.val_every_steps"  # validating at each epoch's end
        log.warning(
            "%s takes %.0f%% of the training time (over %.0f%%); raise %s (or validate by "
            "time: train.val_every_steps: 0 with train.val_every_s)",
            what,
            100 * share,
            100 * VAL_SHARE_WARN,
            setting,
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
        return model_meta(self.member, self.classes) | {
            "fingerprint": self.fingerprint,
            "data": self.data,  # content digests of the train and val splits
        }

    def _save_last(self) -> None:
        """Write last.pt (rank 0), timing it as part of the run's checkpoint share."""
        started = time.monotonic()
        self._tick()
        step = self.step
        self.checkpoints.save_last(
            self.model, step.optimizer, step.scaler, step.ema, self.state, self._meta()
        )
        spent = time.monotonic() - started
        self.state.val_s += spent
        self._last_ckpt = time.monotonic()
        if self.cfg.checkpoint_every_s > 0:
            share = spent / self.cfg.checkpoint_every_s
            self._check_cadence(share, "writing last.pt", "train.checkpoint_every_s")

    def _resume(self) -> None:
        ckpt = self.checkpoints.load_last(self.device, self.fingerprint)
        if ckpt is None:
            self.checkpoints.start_fresh()
            return
        self.model.load_state_dict(ckpt["model"])
        self.step.optimizer.load_state_dict(ckpt["optimizer"])
        self.step.scaler.load_state_dict(ckpt["scaler"])
        if self.step.ema is not None:
            self.step.ema.load_state_dict(ckpt["ema"])
        self.state = TrainState(**ckpt["state"])
        self.history = ckpt["history"]
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
        if not self.history:
            raise PipelineError("training ended before one evaluation; raise epochs or budget")
        self._save_last()  # counted in the share below
        best = st.best or max(self.history, key=lambda r: r["val/map3"])
        summary = {
            "val/map3": best["val/map3"],
            "val/top1": best["val/top1"],
            "val/top3": best["val/top3"],
            "val/loss": best["val/loss"],
            "best/step": best["step"],
            "best/epoch": best["epoch"],
            "best/time_s": round(best["time_s"], 1),
            "epochs": self.history[-1]["epoch"],
            "steps": st.step,
            "time_s": st.elapsed_s,
            "time/val_s": round(st.val_s, 3),
            "time/val_share": round(st.val_share, 4),
            "train/drawings": self.n_train,
            "train/samples_per_s": float(np.mean([r["train/samples_per_s"] for r in self.history])),
        }
        self.checkpoints.export(self.fingerprint)
        live.end(summary)
        if self.ddp.is_main:
            log.info(
                "best val/map3 %.4f (step %s, epoch %.2f) -> %s; %s steps in %s (%.1f%% "
                "validating and checkpointing)",
                best["val/map3"],
                f"{best['step']:,}",
                best["epoch"],
                self.checkpoints.model_path,
                f"{st.step:,}",
                _clock(st.elapsed_s),
                100 * summary["time/val_share"],
            )
        return summary


def _clock(seconds: float) -> str:
    """1:02:03 or 2:03: hours, minutes and seconds for people."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
