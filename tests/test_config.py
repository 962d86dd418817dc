"""Params load strictly: every key known, present and typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.common.config import (
    SECTIONS,
    TrainConfig,
    from_dict,
    load_members,
    load_params,
    load_section,
    to_dict,
)
from pipeline.common.errors import ConfigError
from tests.conftest import REPO_DIR, write_params

PARAMS = REPO_DIR / "params.yaml"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_repo_params_load_with_the_files_values(section: str) -> None:
    # Every field holds what the YAML file says (read here with yaml.safe_load), nothing more.
    cfg = load_section(section, SECTIONS[section], PARAMS)
    assert to_dict(cfg) == yaml.safe_load(PARAMS.read_text())[section]


def test_a_changed_value_in_the_file_comes_through(tmp_path: Path) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["train"] |= {"epochs": 3, "conv_channels": [5, 7], "pooling": "max"}
    params["ensemble"]["members"] = ["gru", "bilstm"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    train = load_section("train", TrainConfig, path)
    assert (train.epochs, train.conv_channels, train.pooling) == (3, (5, 7), "max")
    assert load_section("ensemble", SECTIONS["ensemble"], path).members == ("gru", "bilstm")


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


# ---------------------------------------------------------------- ensemble members


def _params(members: list[str], own: dict | None) -> dict:
    """The repo's params with these ensemble members and this `members:` section."""
    params = yaml.safe_load(PARAMS.read_text())
    params["ensemble"]["members"] = members
    params["members"] = own
    return params


def test_repo_members_are_train_with_their_own_keys_on_top() -> None:
    params = yaml.safe_load(PARAMS.read_text())
    configs = load_members(params)
    assert list(configs) == params["ensemble"]["members"]
    for name, cfg in configs.items():
        own = params["members"].get(name) or {}
        expected = params["train"] | {"model": name} | own
        assert to_dict(cfg) == expected, name


def test_a_members_own_key_overrides_train_for_that_member_alone() -> None:
    configs = load_members(_params(["gru", "cnn"], {"cnn": {"batch_size": 16, "dropout": 0.3}}))
    train = yaml.safe_load(PARAMS.read_text())["train"]
    assert (configs["cnn"].batch_size, configs["cnn"].dropout) == (16, 0.3)
    assert (configs["gru"].batch_size, configs["gru"].dropout) == (
        train["batch_size"],
        train["dropout"],
    )
    assert configs["cnn"].epochs == configs["gru"].epochs == train["epochs"]  # the rest shared
    # A member's model can be any family, whatever its name.
    assert load_members(_params(["small"], {"small": {"model": "bilstm"}}))["small"].model == (
        "bilstm"
    )


@pytest.mark.parametrize("own", [None, {}, {"gru": {"model": "gru"}}])
def test_a_member_without_its_own_section_is_the_family_of_its_name(own: dict | None) -> None:
    configs = load_members(_params(["gru", "bilstm"], own))
    assert {name: cfg.model for name, cfg in configs.items()} == {"gru": "gru", "bilstm": "bilstm"}
    train = yaml.safe_load(PARAMS.read_text())["train"]
    assert to_dict(configs["bilstm"]) == train | {"model": "bilstm"}


def test_an_unknown_member_key_is_named_where_it_was_written() -> None:
    with pytest.raises(ConfigError, match=r"unknown param 'members\.cnn\.hiden_size'"):
        load_members(_params(["gru", "cnn"], {"cnn": {"hiden_size": 3}}))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 0, ">= 1"),
        ("pooling", "median", "must be one of"),
        ("image_size", 8, ">= 16"),
        ("dropout", "some", "must be a number"),
    ],
)
def test_a_bad_member_value_is_named_where_it_was_written(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_members(_params(["gru", "cnn"], {"cnn": {key: value}}))
    text = str(err.value)
    assert text.startswith(f"param 'members.cnn.{key}'") and message in text, text
    assert "\n" not in text


def test_a_bad_train_value_is_still_named_under_train() -> None:
    params = _params(["gru"], {"gru": {"batch_size": 8}})
    params["train"]["dropout"] = 2
    with pytest.raises(ConfigError, match=r"^param 'train\.dropout' must be < 1"):
        load_members(params)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["gru", "cnn", "gru"], "must not name a member twice"),
        (["gru", "a b"], "must be names of letters, digits"),
        (["../gru"], "must be names of letters, digits"),
        ([""], "must be names of letters, digits"),
        ([], "at least 1"),
    ],
)
def test_a_repeated_or_badly_named_member_is_refused(members: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"param 'ensemble\.members'") as err:
        load_members(_params(members, {}))
    assert message in str(err.value)


@pytest.mark.parametrize("own", [["gru"], {"gru": 3}])
def test_members_sections_that_are_not_mappings_are_refused(own: object) -> None:
    with pytest.raises(ConfigError, match=r"'members(\.gru)?' must be a mapping"):
        load_members(_params(["gru"], own))  # type: ignore[arg-type]


def test_every_stage_refuses_a_bad_member_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Not only the train stages: a stage checks every section (members too) as it starts.
    from pipeline import evaluate

    write_params(tmp_path, _params(["gru", "cnn"], {"cnn": {"batch_size": 0}}))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--params", str(tmp_path / "params.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: param 'members.cnn.batch_size' must be >= 1, got 0\n"
