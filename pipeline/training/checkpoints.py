"""Checkpoints: resume a killed run exactly, keep the best model, export it atomically.

For ensemble member <m> (`Paths.for_member`):

    checkpoints/<m>/last.pt         model, optimiser, scaler, weight average, RNG states and
                                    `TrainState` (every `checkpoint_every_s`, or each epoch's
                                    end when that is 0, and the run's end): a rerun resumes
                                    mid-epoch from here
    checkpoints/<m>/best.pt         the best model by val/map3 so far (the weight average when
                                    `ema_decay` > 0), with its figures in `meta`
    checkpoints/<m>/history.jsonl   one line per validation (the curves), appended as they come
    models/members/<m>/model.pt     a copy of best.pt, written when the run ends (the DVC output)

A checkpoint's size does not grow with the run: the curves live in history.jsonl, not in
last.pt, and a resumed run keeps the lines up to its last.pt's step. A last.pt whose
`meta.fingerprint` differs (other params, other data, other world size) is ignored, with a
warning, and the run starts fresh. Only rank 0 writes. last.pt and best.pt are written to a
temporary name and renamed, so a kill never leaves a truncated file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.common.config import to_dict
from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_file, unreadable_reason
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.members import MemberConfig
from pipeline.training.ema import WeightAverage

log = logging.getLogger(__name__)

# Params that do not change the trained weights, so a checkpoint made with others still resumes.
NOT_FINGERPRINTED = ("workers", "threads", "checkpoint_every_s", "val_every_steps", "val_every_s")


@dataclass
class TrainState:
    """Where a run is; saved in last.pt so a rerun continues from here."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` already done
    step: int = 0
    elapsed_s: float = 0.0  # training time across resumes
    total_steps: int = 0  # current estimate of the run's length in steps
    best_map3: float = -1.0
    best: dict[str, float] = field(default_factory=dict)  # the best validation's row
    n_rows: int = 0  # validations so far (lines of history.jsonl that belong to this state)
    val_s: float = 0.0  # time spent validating and writing checkpoints (of elapsed_s)
    finished: bool = False

    @property
    def val_share(self) -> float:
        """Share of the training time spent validating and writing checkpoints so far."""
        return self.val_s / max(self.elapsed_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def data_digests(store: DrawingStore) -> dict[str, str]:
    """The content digests of the splits training reads (recorded by preprocess)."""
    return {split: store.attrs["digests"][split] for split in ("train", "val")}


def fingerprint(member: MemberConfig, store: DrawingStore, world_size: int) -> str:
    """What a checkpoint must share with this run to be resumed or exported: the model and the
    params that change the weights, the class list, what the train and val splits hold (their
    content digests, not just their counts) and the number of ranks."""
    params = {k: v for k, v in to_dict(member.train).items() if k not in NOT_FINGERPRINTED}
    model = {"model": member.model, **to_dict(member.model_cfg)}
    model["starting_weights"] = member.family.starting_weights(member.model_cfg)
    data = {"classes": store.classes, "digests": data_digests(store)}
    blob = json.dumps([params, model, data, world_size], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class Checkpoints:
    """last.pt, best.pt and the exported model of one run (writes only on the main rank)."""

    def __init__(self, checkpoint_dir: Path, model_path: Path, is_main: bool) -> None:
        self.last_path = checkpoint_dir / "last.pt"
        self.best_path = checkpoint_dir / "best.pt"
        self.history_path = checkpoint_dir / "history.jsonl"
        self.model_path = model_path
        self.is_main = is_main

    def append_history(self, row: dict[str, float]) -> None:
        """One validation's row, appended (a line per row; a kill may cut the last one)."""
        if self.is_main:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.history_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def _history(self, n_rows: int) -> list[dict[str, float]] | None:
        """The first `n_rows` rows (those of the state being resumed), the file cut to them:
        rows a killed run logged after its last.pt are forgotten, as its steps are. None if the
        file holds fewer."""
        rows: list[dict[str, float]] = []
        if self.history_path.is_file():
            for line in self.history_path.read_text().splitlines()[:n_rows]:
                try:
                    rows.append(json.loads(line))
                except ValueError:  # a line cut by a kill: it and what follows are not kept
                    break
        if len(rows) != n_rows:
            return None
        if self.is_main:
            with atomic_file(self.history_path) as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        return rows

    def save_last(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ema: WeightAverage | None,
        state: TrainState,
        meta: dict[str, Any],
    ) -> None:
        if not self.is_main:
            return
        ckpt = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "state": state.to_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "meta": meta,
        }
        save_checkpoint(ckpt, self.last_path)

    def save_best(self, model: nn.Module, meta: dict[str, Any]) -> None:
        if self.is_main:
            save_checkpoint({"model": model.state_dict(), "meta": meta}, self.best_path)

    def export(self, expected: str) -> None:
        """best.pt -> models/model.pt, atomically, only if best.pt is this run's (fingerprint)."""
        if not self.is_main:
            return
        best = torch.load(self.best_path, map_location="cpu", weights_only=True)
        if best["meta"].get("fingerprint") != expected:
            raise PipelineError(
                f"{self.best_path} is not from this run (other params or data); delete "
                f"{self.best_path.parent} and rerun `dvc repro train`"
            )
        with open(self.best_path, "rb") as src, atomic_file(self.model_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def start_fresh(self) -> None:
        """Forget an earlier run's best model and curves, so only this run's are kept."""
        if self.is_main:
            self.best_path.unlink(missing_ok=True)
            self.history_path.unlink(missing_ok=True)

    def load_last(self, device: torch.device, expected: str) -> dict[str, Any] | None:
        """last.pt if it exists, is readable and carries fingerprint `expected`; else None."""
        if not self.last_path.is_file():
            return None
        try:
            ckpt = torch.load(self.last_path, map_location=device, weights_only=True)
        except Exception as err:
            log.warning(
                "cannot read %s (%s); starting fresh", self.last_path, unreadable_reason(err)
            )
            return None
        if not _is_resumable(ckpt):
            log.warning("%s is not a resumable checkpoint; starting fresh", self.last_path)
            return None
        if ckpt["meta"].get("fingerprint") != expected:
            log.warning("%s was made with other params or data; starting fresh", self.last_path)
            return None
        history = self._history(ckpt["state"]["n_rows"])
        if history is None:
            log.warning(
                "%s lacks validations %s had; starting fresh", self.history_path, self.last_path
            )
            return None
        return ckpt | {"history": history}


def _is_resumable(ckpt: Any) -> bool:
    keys = {"model", "optimizer", "scaler", "ema", "state", "rng", "meta"}
    state_keys = {f.name for f in fields(TrainState)}
    return (
        isinstance(ckpt, dict)
        and keys <= ckpt.keys()
        and isinstance(ckpt["state"], dict)
        and set(ckpt["state"]) == state_keys
        and isinstance(ckpt["meta"], dict)
    )
