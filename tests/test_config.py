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
    set_dotted,
    to_dict,
)
from pipeline.common.errors import ConfigError
from pipeline.models import FAMILIES
from pipeline.models.members import TRAIN_KEYS, load_members
from tests.conftest import REPO_DIR, write_params

PARAMS = REPO_DIR / "params.yaml"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_repo_params_load_with_the_files_values(section: str) -> None:
    # Every field holds what the YAML file says (read here with yaml.safe_load), nothing more.
    cfg = load_section(section, SECTIONS[section], PARAMS)
    assert to_dict(cfg) == yaml.safe_load(PARAMS.read_text())[section]


def test_a_changed_value_in_the_file_comes_through(tmp_path: Path) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["train"] |= {"epochs": 3, "label_smoothing": 0.2}
    params["ensemble"]["members"] = ["gru", "bilstm"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    train = load_section("train", TrainConfig, path)
    assert (train.epochs, train.label_smoothing) == (3, 0.2)
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
        ("epochs", 2.5, "must be an integer"),
        ("learning_rate", "fast", "must be a number"),
        ("label_smoothing", 1.0, "must be < 1"),
        ("class_balance", 1.5, "must be <= 1"),
        ("class_balance", -0.5, "must be >= 0"),
        ("aug_rotate_deg", float("nan"), "a finite number"),
    ],
)
def test_bad_values_are_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, _train_dict() | {key: value}, "train")


def test_config_is_a_snapshot_of_its_source() -> None:
    # Editing the dict a config was built from afterwards changes nothing, and the plain dict
    # a checkpoint stores (to_dict) rebuilds the same config.
    raw = dict(load_params(PARAMS)["members"]["gru"])
    raw.pop("model")
    family = FAMILIES["gru"]
    cfg = from_dict(family.config, raw, "members.gru")
    channels = tuple(raw["conv_channels"])
    raw["conv_channels"].append(999)
    raw["hidden_size"] = -1
    assert cfg.conv_channels == channels and cfg.hidden_size > 0
    assert from_dict(family.config, to_dict(cfg), "members.gru") == cfg


def test_int_is_accepted_for_float() -> None:
    cfg = from_dict(TrainConfig, _train_dict() | {"time_budget_s": 120}, "train")
    assert cfg.time_budget_s == 120.0 and isinstance(cfg.time_budget_s, float)


# ---------------------------------------------------------------- ensemble members


def _params(members: list[str], changes: dict[str, object] | None = None) -> dict:
    """The repo's params with these ensemble members and `changes` ({"members.cnn.x": 1})."""
    params = yaml.safe_load(PARAMS.read_text())
    params["ensemble"]["members"] = members
    for dotted, value in (changes or {}).items():
        set_dotted(params, dotted, value)
    return params


def test_repo_members_are_their_family_config_and_train_with_their_own_keys_on_top() -> None:
    params = yaml.safe_load(PARAMS.read_text())
    members = load_members(params)
    assert list(members) == params["ensemble"]["members"]
    for name, member in members.items():
        own = params["members"][name]
        assert member.model == own["model"]
        family_keys = {k: v for k, v in own.items() if k not in TRAIN_KEYS | {"model"}}
        assert to_dict(member.model_cfg) == family_keys, name
        overrides = {k: v for k, v in own.items() if k in TRAIN_KEYS}
        assert to_dict(member.train) == params["train"] | overrides, name


def test_family_keys_never_shadow_train_keys() -> None:
    for name, family in FAMILIES.items():
        assert not family.field_names() & TRAIN_KEYS, name


def test_a_members_own_key_overrides_train_for_that_member_alone() -> None:
    members = load_members(_params(["gru", "cnn"], {"members.cnn.batch_size": 16}))
    train = yaml.safe_load(PARAMS.read_text())["train"]
    assert (members["cnn"].train.batch_size, members["gru"].train.batch_size) == (
        16,
        train["batch_size"],
    )
    assert members["gru"].train.epochs == train["epochs"]  # the rest shared


def test_a_member_of_any_name_is_the_family_it_names() -> None:
    params = _params(["small"])
    params["members"]["small"] = params["members"]["bilstm"] | {"hidden_size": 8}
    small = load_members(params)["small"]
    assert small.model == "bilstm" and small.model_cfg.hidden_size == 8


def test_a_member_without_its_section_is_named() -> None:
    params = _params(["gru", "extra"])
    with pytest.raises(ConfigError, match=r"missing params 'members\.extra'"):
        load_members(params)


def test_a_missing_family_key_is_named_where_it_belongs() -> None:
    params = _params(["gru"])
    del params["members"]["gru"]["hidden_size"]
    with pytest.raises(ConfigError, match=r"missing param 'members\.gru\.hidden_size'"):
        load_members(params)


def test_an_unknown_member_key_is_named_where_it_was_written() -> None:
    with pytest.raises(ConfigError, match=r"unknown param 'members\.cnn\.hiden_size'"):
        load_members(_params(["gru", "cnn"], {"members.cnn.hiden_size": 3}))
    # A key of another family is unknown too: a cnn has no hidden_size.
    with pytest.raises(ConfigError, match=r"unknown param 'members\.cnn\.hidden_size'"):
        load_members(_params(["gru", "cnn"], {"members.cnn.hidden_size": 3}))


def test_an_unknown_family_is_named() -> None:
    with pytest.raises(ConfigError, match=r"param 'members\.gru\.model' must be one of"):
        load_members(_params(["gru"], {"members.gru.model": "gruu"}))


def test_a_member_the_ensemble_leaves_out_is_checked_all_the_same() -> None:
    # A value no member of the ensemble uses is still a value: a typo there is an error too.
    with pytest.raises(ConfigError, match=r"members\.cnn\.image_size"):
        load_members(_params(["gru"], {"members.cnn.image_size": 8}))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 0, ">= 1"),
        ("image_size", 8, ">= 16"),
        ("dropout", "some", "must be a number"),
        ("backbone", 3, "must be a string"),
    ],
)
def test_a_bad_member_value_is_named_where_it_was_written(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_members(_params(["gru", "cnn"], {f"members.cnn.{key}": value}))
    text = str(err.value)
    assert text.startswith(f"param 'members.cnn.{key}'") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pooling", "median", "must be one of"),
        ("batch_norm", "yes", "true or false"),
        ("conv_channels", 8, "must be a list"),
        ("conv_kernel", 4, "must be odd"),
    ],
)
def test_a_bad_sequence_value_is_named_where_it_was_written(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_members(_params(["gru"], {f"members.gru.{key}": value}))
    assert str(err.value).startswith(f"param 'members.gru.{key}'") and message in str(err.value)


def test_a_bad_train_value_is_still_named_under_train() -> None:
    params = _params(["gru"], {"members.gru.batch_size": 8})
    params["train"]["label_smoothing"] = 2
    with pytest.raises(ConfigError, match=r"^param 'train\.label_smoothing' must be < 1"):
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
        load_members(_params(members))
    assert message in str(err.value)


@pytest.mark.parametrize("own", [["gru"], {"gru": 3}])
def test_members_sections_that_are_not_mappings_are_refused(own: object) -> None:
    params = _params(["gru"])
    params["members"] = own
    with pytest.raises(
        ConfigError, match=r"'?members(\.gru)?'? must be a mapping|section 'members"
    ):
        load_members(params)


def test_every_stage_refuses_a_bad_member_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Not only the train stages: a stage checks every section, and the members' outline, as
    # it starts (their family keys are checked by the train stages, which know the families).
    from pipeline import evaluate

    write_params(tmp_path, _params(["gru", "cnn"], {"members.cnn.batch_size": 0}))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--params", str(tmp_path / "params.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: param 'members.cnn.batch_size' must be >= 1, got 0\n"


# ---------------------------------------------------------------- one time budget for the ensemble


@pytest.mark.parametrize(
    ("total", "shares", "expected"),
    [
        (1200, {"gru": 1, "bilstm": 1, "cnn": 1}, {"gru": 400, "bilstm": 400, "cnn": 400}),
        (1200, {"gru": 1, "bilstm": 1, "cnn": 2}, {"gru": 300, "bilstm": 300, "cnn": 600}),
        (1000, {"gru": 1.5, "bilstm": 1, "cnn": 2.5}, {"gru": 300, "bilstm": 200, "cnn": 500}),
    ],
)
def test_an_ensemble_budget_is_split_by_the_shares(
    total: float, shares: dict, expected: dict
) -> None:
    params = _params(["gru", "bilstm", "cnn"], {"ensemble.time_budget_s": total})
    params["ensemble"]["time_shares"] = shares
    budgets = {n: m.train.time_budget_s for n, m in load_members(params).items()}
    assert budgets == pytest.approx(expected)
    assert sum(budgets.values()) == pytest.approx(total)  # the parts add up to the whole
    again = {n: m.train.time_budget_s for n, m in load_members(params).items()}
    assert again == budgets  # and the split is the same every time


@pytest.mark.parametrize("shares", [{}, {"gru": 1, "cnn": 2}])
def test_with_an_ensemble_budget_every_member_has_a_share(shares: dict) -> None:
    # Otherwise dropping bilstm from the members would give gru and cnn more time while DVC,
    # seeing no param of theirs change, kept their shorter runs.
    params = _params(["gru", "bilstm", "cnn"], {"ensemble.time_budget_s": 1200})
    params["ensemble"]["time_shares"] = shares
    missing = "gru" if not shares else "bilstm"
    with pytest.raises(ConfigError, match=rf"time_shares' gives '{missing}' no share"):
        load_members(params)


def test_without_an_ensemble_budget_each_member_keeps_its_own() -> None:
    params = _params(["gru", "cnn"], {"members.cnn.time_budget_s": 90, "train.time_budget_s": 30})
    budgets = {n: m.train.time_budget_s for n, m in load_members(params).items()}
    assert budgets == {"gru": 30, "cnn": 90}


def test_a_member_budget_beside_an_ensemble_budget_is_refused() -> None:
    params = _params(
        ["gru", "cnn"], {"members.cnn.time_budget_s": 90, "ensemble.time_budget_s": 600}
    )
    params["ensemble"]["time_shares"] = {"gru": 1, "cnn": 1}
    with pytest.raises(ConfigError, match=r"'members\.cnn\.time_budget_s' and 'ensemble"):
        load_members(params)


@pytest.mark.parametrize("key", ["time_shares", "flip_tta"])
def test_a_share_or_flip_of_no_member_is_refused(key: str) -> None:
    params = _params(["gru", "cnn"])
    params["ensemble"][key] = {"cnnn": 2} if key == "time_shares" else ["cnnn"]
    with pytest.raises(ConfigError, match=rf"param 'ensemble\.{key}' names 'cnnn'"):
        load_members(params)
