"""Presets (configs/*.yaml): each is valid against the params, prints the `-S` arguments DVC
takes (a member's own key as `members.<name>.<key>`), and `--apply` writes it into the params
file with the comments kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.common.errors import ConfigError
from pipeline.models.members import load_members
from pipeline.preset import apply, load_preset, merged, set_args
from tests.conftest import REPO_DIR

PRESETS = sorted(p.stem for p in (REPO_DIR / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_valid_params(name: str) -> None:
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    merged(params, load_preset(name, REPO_DIR / "configs"))  # raises ConfigError if not


def test_a_member_key_becomes_a_dotted_set_argument() -> None:
    preset = {"ensemble": {"members": ["gru", "cnn"]}, "members": {"cnn": {"image_size": 128}}}
    assert set_args(preset) == [
        "-S",
        'ensemble.members=["gru","cnn"]',
        "-S",
        "members.cnn.image_size=128",
    ]


def test_the_full_gpu_preset_gives_the_cnn_its_own_budget() -> None:
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    members = load_members(merged(params, load_preset("full-gpu", REPO_DIR / "configs")))
    assert list(members) == ["gru", "bilstm", "cnn"]
    cnn, gru, bilstm = members["cnn"], members["gru"], members["bilstm"]
    assert cnn.train.time_budget_s == 12 * 3600 and cnn.model_cfg.image_size == 128
    assert gru.train.time_budget_s == bilstm.train.time_budget_s == 6 * 3600
    assert bilstm.model == "bilstm" and gru.model == "gru"
    assert gru.model_cfg.hidden_size == bilstm.model_cfg.hidden_size == 256


@pytest.mark.parametrize("name", ["full-gpu", "full-multigpu"])
def test_the_gpu_presets_validate_by_time_alone(name: str) -> None:
    # A GPU step takes milliseconds: a step cadence would spend the run validating.
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    for member in load_members(merged(params, load_preset(name, REPO_DIR / "configs"))).values():
        assert member.train.val_every_steps == 0 and member.train.val_every_s >= 600


def test_the_multi_gpu_preset_starts_a_process_per_gpu() -> None:
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    members = load_members(merged(params, load_preset("full-multigpu", REPO_DIR / "configs")))
    assert {m.train.processes for m in members.values()} == {0}  # 0 = one per GPU


def test_a_bad_member_key_in_a_preset_names_it(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("members:\n  cnn:\n    image_sise: 64\n")
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    with pytest.raises(ConfigError, match=r"unknown param 'members\.cnn\.image_sise'"):
        merged(params, load_preset("bad", tmp_path))


def test_apply_writes_nested_member_keys_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO_DIR / "params.yaml").read_text())
    apply(path, {"members": {"cnn": {"image_size": 96}}, "train": {"time_budget_s": 60}})
    text = path.read_text()
    assert "# one train stage each" in text  # a comment of the ensemble section survives
    params = yaml.safe_load(text)
    assert params["members"]["cnn"]["image_size"] == 96
    assert params["train"]["time_budget_s"] == 60
    assert params["members"]["cnn"]["model"] == "cnn"  # the rest of the member untouched
