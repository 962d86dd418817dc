"""Params load strictly: every key known, present and typed."""

from __future__ import annotations

import pytest

from pipeline.common.config import SECTIONS, TrainConfig, from_dict, load_params, load_section
from pipeline.common.errors import ConfigError
from tests.conftest import REPO_DIR


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_repo_params_load(section: str) -> None:
    cfg = load_section(section, SECTIONS[section], REPO_DIR / "configs" / "params.yaml")
    assert type(cfg) is SECTIONS[section]


def _train_dict() -> dict:
    return dict(load_params(REPO_DIR / "configs" / "params.yaml")["train"])


def test_unknown_key_is_named() -> None:
    raw = _train_dict() | {"hiden_size": 3}
    with pytest.raises(ConfigError, match=r"unknown param 'train\.hiden_size'"):
        from_dict(TrainConfig, raw, "train")


def test_missing_key_is_named() -> None:
    raw = _train_dict()
    del raw["epochs"]
    with pytest.raises(ConfigError, match=r"missing param 'train\.epochs'"):
        from_dict(TrainConfig, raw, "train")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pooling", "median", "must be one of"),
        ("epochs", 2.5, "must be an integer"),
        ("batch_norm", "yes", "true or false"),
        ("conv_channels", 8, "must be a list"),
        ("learning_rate", "fast", "must be a number"),
    ],
)
def test_bad_values_are_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, _train_dict() | {key: value}, "train")


def test_config_is_frozen() -> None:
    cfg = from_dict(TrainConfig, _train_dict(), "train")
    with pytest.raises(AttributeError):
        cfg.epochs = 3  # type: ignore[misc]


def test_int_is_accepted_for_float() -> None:
    cfg = from_dict(TrainConfig, _train_dict() | {"time_budget_s": 120}, "train")
    assert cfg.time_budget_s == 120.0 and isinstance(cfg.time_budget_s, float)
