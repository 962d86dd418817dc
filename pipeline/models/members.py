"""The ensemble's members as params describe them: a name, a model family with its config, and
the training settings (the `train` section with the member's own `train` keys on top).

    members = load_members(load_params())      # {"gru": MemberConfig, "cnn": ...}
    model = members["cnn"].build(n_classes)     # ImageCNN
    encoder = members["cnn"].encoder()          # ImageEncoder(max_points, image_size)

In params.yaml each `members.<name>` names its `model` (a key of `pipeline.models.FAMILIES`) and
holds every key of that family's config, plus any `train` key it overrides (`epochs`,
`time_budget_s`, ...). So a family's key lives with the members that use it: DVC reruns
`train@<name>` when `members.<name>` changes and no other member. With `ensemble.time_budget_s`
> 0 each member's `time_budget_s` is its share of that budget (`ensemble.time_shares`).
Unknown, missing and out-of-range keys are a `ConfigError` naming `members.<name>.<key>`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from pipeline.common.config import (
    EnsembleConfig,
    TrainConfig,
    from_dict,
    member_sections,
    member_train_config,
    validate_sections,
)
from pipeline.common.errors import ConfigError
from pipeline.core.encoders import Encoder
from pipeline.models import family
from pipeline.models.family import Family

TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class MemberConfig:
    name: str  # the member: its stage is train@<name>, its model models/members/<name>/
    model: str  # its family, a key of pipeline.models.FAMILIES
    model_cfg: Any  # the family's config dataclass
    train: TrainConfig

    @property
    def family(self) -> Family:
        return family(self.model)

    def build(self, n_classes: int) -> nn.Module:
        """A fresh, untrained model for `n_classes` classes."""
        return self.family.build(self.model_cfg, n_classes)

    def encoder(self) -> Encoder:
        """How the member's drawings are fed (features or images)."""
        return self.family.encoder(self.model_cfg)


def member_config(
    name: str, own: dict[str, Any], params: dict[str, Any], budget_s: float | None = None
) -> MemberConfig:
    """One member from its `members.<name>` mapping and the params' `train` section;
    `budget_s` is its part of an ensemble time budget (None: no ensemble budget)."""
    fam = family(own.get("model"), f"members.{name}.model")
    family_keys = fam.field_names()
    assert not family_keys & TRAIN_KEYS, "a family key may not shadow a train key"
    unknown = sorted(set(own) - family_keys - TRAIN_KEYS - {"model"})
    if unknown:
        raise ConfigError(
            f"unknown param 'members.{name}.{unknown[0]}' (the {own['model']} family's keys: "
            f"{', '.join(sorted(family_keys))}; or a key of 'train')"
        )
    model_cfg = from_dict(
        fam.config, {k: v for k, v in own.items() if k in family_keys}, f"members.{name}"
    )
    overrides = {k: v for k, v in own.items() if k in TRAIN_KEYS}
    if budget_s is not None:
        if "time_budget_s" in overrides:
            raise ConfigError(
                f"param 'members.{name}.time_budget_s' and 'ensemble.time_budget_s' both set "
                f"{name}'s training time; keep one (ensemble.time_shares weighs the members)"
            )
        overrides["time_budget_s"] = budget_s
    return MemberConfig(name, own["model"], model_cfg, member_train_config(params, overrides, name))


def load_members(params: dict[str, Any]) -> dict[str, MemberConfig]:
    """Every member of `ensemble.members`, in that order, after checking every section and
    every entry of `members` (one the ensemble leaves out is checked all the same)."""
    validate_sections(params)
    used = member_sections(params)
    budgets = from_dict(EnsembleConfig, params["ensemble"], "ensemble").member_budgets()
    every = {
        name: member_config(name, own, params, budgets.get(name))
        for name, own in params["members"].items()
    }
    return {name: every[name] for name in used}
