"""Which models the check measures: the members of a run's params, as the train stage loads them.

A GPU's default is the `full-gpu` preset (resnet34d at 128 px, BiLSTM and GRU 3 x 256), the run
the check is for; the CPU's is the repo's params.yaml (the small CPU models). Each member is the
pipeline's own `MemberConfig` (`load_members`), so a key the params reject fails here too.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from benchmarks.kaggle16 import REPO_DIR
from pipeline.common.config import load_params
from pipeline.models import family
from pipeline.models.members import MemberConfig, load_members
from pipeline.models.rnn import RNN_PATHS, SequenceConfig
from pipeline.preset import load_preset, merged

GPU_PRESET = "full-gpu"


def resolve_preset(preset: str | None, device: torch.device) -> str | None:
    """auto (or None): `GPU_PRESET` on CUDA, the repo's params elsewhere; "none": the repo's."""
    if preset in (None, "auto"):
        return GPU_PRESET if device.type == "cuda" else None
    return None if preset == "none" else preset


def run_params(preset: str | None) -> dict[str, Any]:
    """params.yaml, with the preset's keys on top when one is named (validated either way)."""
    params = load_params(REPO_DIR / "params.yaml")
    if preset:
        params = merged(params, load_preset(preset, REPO_DIR / "configs"))
    return params


def with_member_keys(params: dict[str, Any], names: list[str], **keys: Any) -> dict[str, Any]:
    """`params` with `keys` set in `members.<name>` of each of `names` (a member's own keys win
    over `train:`, so a preset's per-member budget is replaced too) and `names` the ensemble."""
    p = copy.deepcopy(params)
    for name in names:
        p["members"][name] = {**p["members"][name], **keys}
    ensemble = p["ensemble"] = {**p["ensemble"], "members": list(names)}
    # Ensemble keys that name members may name only those left, and an ensemble-wide budget
    # would clash with a member's own (where this version of the params has them).
    if "time_shares" in ensemble:
        ensemble["time_shares"] = {k: v for k, v in ensemble["time_shares"].items() if k in names}
    if "flip_tta" in ensemble:
        ensemble["flip_tta"] = [n for n in ensemble["flip_tta"] if n in names]
    if "time_budget_s" in keys and "time_budget_s" in ensemble:
        ensemble["time_budget_s"] = 0
    return p


def select_members(
    params: dict[str, Any], names: list[str] | None, image_size: int = 0
) -> tuple[dict[str, Any], dict[str, MemberConfig]]:
    """The params of the measured members (`names`, default the ensemble's) and their configs;
    `image_size` > 0 replaces the side of every member whose family renders images."""
    names = list(names or params["ensemble"]["members"])
    unknown = [n for n in names if n not in params["members"]]
    if unknown:
        raise SystemExit(
            f"error: no members {unknown} in the params; known: {list(params['members'])}"
        )
    p = with_member_keys(params, names)
    for name in names:
        if image_size and "image_size" in family(p["members"][name]["model"]).field_names():
            p["members"][name]["image_size"] = image_size
    return p, load_members(p)


def rnn_paths(member: MemberConfig) -> list[str]:
    """The RNN paths a sequence member runs on (`padded`, `fused`); "-" for any other family."""
    return list(RNN_PATHS) if issubclass(member.family.config, SequenceConfig) else ["-"]


def describe(member: MemberConfig) -> dict[str, Any]:
    """What the report says of a member: its family, its config and the train keys that size it."""
    t = member.train
    return {
        "model": member.model,
        "config": dataclasses.asdict(member.model_cfg),
        "batch_size": t.batch_size,
        "workers": t.workers,
        "threads": t.threads,
        "val_every_steps": t.val_every_steps,
        "val_every_s": t.val_every_s,
        "checkpoint_every_s": t.checkpoint_every_s,
    }
