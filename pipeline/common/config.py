"""Typed, strict params: one frozen dataclass per section of `configs/params.yaml`.

A stage loads only its own section: `cfg = load_section("train", TrainConfig)`.
Unknown or missing keys, wrong types and bad choices raise `ConfigError` naming the key,
so a typo in `dvc exp run -S configs/params.yaml:train.hiden_size=256` fails at once instead of
being ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from pipeline.common.errors import ConfigError
from pipeline.common.paths import PARAMS_PATH

T = TypeVar("T")


@dataclass(frozen=True)
class DownloadConfig:
    source: Literal["synthetic", "kaggle", "local", "ndjson"]
    path: str  # folder for `local` (Kaggle layout) or `ndjson` (<word>.ndjson files)
    competition: str
    test_fraction: float  # ndjson: per-class fraction held out as the test set
    synthetic_classes: int
    synthetic_train_per_class: int
    synthetic_test_per_class: int
    seed: int


@dataclass(frozen=True)
class PreprocessConfig:
    max_per_class: int  # 0 = no cap
    val_per_class: int  # validation drawings per class, chosen by key_id hash
    recognized_only: bool
    max_points: int  # cap on points per drawing (see preprocess docstring)
    block_size: int  # drawings per zarr chunk of the per-drawing arrays
    workers: int  # 0 = all cores
    seed: int


@dataclass(frozen=True)
class TrainConfig:
    model: str  # a name in pipeline.models.MODELS: gru | bilstm (checked as the stage starts)
    epochs: int
    time_budget_s: float  # 0 = no limit
    batch_size: int
    learning_rate: float
    weight_decay: float
    clip_grad_norm: float
    label_smoothing: float
    hidden_size: int
    num_layers: int
    conv_channels: list[int]
    conv_kernel: int
    conv_stride: int  # stride of the first conv layer (2 halves the RNN's steps)
    batch_norm: bool
    dropout: float
    pooling: Literal["sum", "mean", "max", "meanmax"]
    max_points: int
    aug_scale: float
    aug_shear: float
    aug_rotate_deg: float
    aug_jitter: float
    aug_stroke_dropout: float
    shuffle_buffer_blocks: int
    workers: int  # DataLoader worker processes; 0 = load in the main process
    threads: int  # torch threads per process; 0 = cores / processes - workers
    checkpoint_every_s: float
    seed: int


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int
    gallery_size: int


@dataclass(frozen=True)
class PredictConfig:
    batch_size: int
    ensemble: list[str]  # extra checkpoint paths whose probabilities are averaged in
    tta: int  # extra augmented passes averaged in; 0 = off
    prior_correction: bool  # push predictions towards a balanced test set
    seed: int


SECTIONS: dict[str, type] = {
    "download": DownloadConfig,
    "preprocess": PreprocessConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "predict": PredictConfig,
}


def load_params(path: Path = PARAMS_PATH) -> dict[str, Any]:
    """Read the params YAML file as a dict of sections."""
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repo root or pass --params")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of sections")
    return params


def load_section(name: str, cls: type[T], path: Path = PARAMS_PATH) -> T:
    """Load section `name` of the params file into the frozen dataclass `cls`."""
    params = load_params(path)
    if name not in params:
        raise ConfigError(f"{path}: missing section '{name}'")
    return from_dict(cls, params[name], prefix=name)


def from_dict(cls: type[T], raw: Any, prefix: str = "") -> T:
    """Build `cls` from a dict, checking keys, types and Literal choices."""
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown param '{prefix}.{unknown[0]}' (known: {', '.join(names)})")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"missing param '{prefix}.{missing[0]}'")
    values = {n: _coerce(raw[n], hints[n], f"{prefix}.{n}") for n in names}
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config (for checkpoints and store metadata)."""
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"param '{key}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"param '{key}' must be a list, got {value!r}")
        (item,) = get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(hint):
            if arg is type(None) and value is None:
                return None
        non_none = [a for a in get_args(hint) if a is not type(None)]
        return _coerce(value, non_none[0], key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"param '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"param '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"param '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"param '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")
