"""Params load strictly: every key known, present and typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.common.config import (
    SECTIONS,
    TrainConfig,
    from_dict,
    load_params,
    load_section,
    to_dict,
)
from pipeline.common.errors import ConfigError
from tests.conftest import REPO_DIR

PARAMS = REPO_DIR / "params.yaml"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_repo_params_load_with_the_files_values(section: str) -> None:
    # Every field holds what the YAML file says (read here with yaml.safe_load), nothing more.
    cfg = load_section(section, SECTIONS[section], PARAMS)
    assert to_dict(cfg) == yaml.safe_load(PARAMS.read_text())[section]


def test_a_changed_value_in_the_file_comes_through(tmp_path: Path) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["train"] |= {"epochs": 3, "conv_channels": [5, 7], "pooling": "max"}
    params["predict"]["ensemble"] = ["models/other.pt"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    train = load_section("train", TrainConfig, path)
    assert (train.epochs, train.conv_channels, train.pooling) == (3, (5, 7), "max")
    assert load_section("predict", SECTIONS["predict"], path).ensemble == ("models/other.pt",)


def test_a_missing_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {}}))
    with pytest.raises(ConfigError, match="missing section 'evaluate'"):
        load_section("evaluate", SECTIONS["evaluate"], path)


def _train_dict() -> dict:
    return dict(load_params(PARAMS)["train"])


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


def test_config_is_a_snapshot_of_its_source() -> None:
    # Editing the dict a config was built from afterwards changes nothing, and the plain dict
    # a checkpoint stores (to_dict) rebuilds the same config.
    raw = _train_dict()
    cfg = from_dict(TrainConfig, raw, "train")
    channels = tuple(raw["conv_channels"])
    raw["conv_channels"].append(999)
    raw["epochs"] = -1
    assert cfg.conv_channels == channels and cfg.epochs == _train_dict()["epochs"]
    assert from_dict(TrainConfig, to_dict(cfg), "train") == cfg


def test_int_is_accepted_for_float() -> None:
    cfg = from_dict(TrainConfig, _train_dict() | {"time_budget_s": 120}, "train")
    assert cfg.time_budget_s == 120.0 and isinstance(cfg.time_budget_s, float)
