"""Typed, strict params: one frozen, validated dataclass per section of `params.yaml`.

A stage loads only its own section: `cfg = load_section("train", TrainConfig)`; the `members`
section (each member's model family and its keys) loads through `pipeline.models.members`,
which knows the families. Unknown or
missing keys, wrong types, bad choices and values out of range raise `ConfigError` naming the key,
the value and what is allowed, so a typo in `dvc exp run -S train.hiden_size=256` or a
`train.batch_size: 0` fails at once with one line instead of a traceback deep in a stage.
Validation is pydantic's (strict: no silent str -> int, bool -> int or NaN).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from pipeline.common.errors import ConfigError
from pipeline.common.paths import PARAMS_PATH

T = TypeVar("T")

# Strict types (YAML `1` is fine for a float; `true` is not an int), every float finite.
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Count = Annotated[int, Field(ge=0)]  # 0 is meaningful (none / off / all cores)
Positive = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Seconds = Annotated[float, Field(ge=0)]  # 0 = off
Fraction = Annotated[float, Field(ge=0, lt=1)]  # a probability or share that cannot be 1
# YAML lists become tuples, so a frozen config is immutable all the way down (and hashable).
AsTuple = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError("must be odd (so conv outputs line up with inputs)")
    return value


OddPositive = Annotated[int, Field(ge=1), AfterValidator(_odd)]


@dataclass(frozen=True, config=STRICT)
class DownloadConfig:
    source: Literal["synthetic", "kaggle", "local", "ndjson"]
    path: str  # folder for `local` (Kaggle layout) or `ndjson` (<word>.ndjson files)
    competition: str
    test_fraction: Annotated[float, Field(gt=0, lt=1)]  # ndjson: per-class share held out
    synthetic_classes: Annotated[int, Field(ge=2)]  # at most the templates there are (20)
    synthetic_train_per_class: Positive
    synthetic_test_per_class: Positive
    seed: Seed


@dataclass(frozen=True, config=STRICT)
class PreprocessConfig:
    max_per_class: Count  # 0 = no cap
    val_per_class: Count  # validation drawings per class, chosen by key_id hash
    blend_per_class: Count  # drawings per class the ensemble's blend is fitted on (0 = none)
    recognized_only: bool
    max_points: Count  # cap on points per drawing; 0 = no cap
    block_size: Positive  # drawings per zarr chunk of the per-drawing arrays
    workers: Count  # 0 = all cores
    seed: Seed


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    """How every member trains; its model is its family's config (`members.<name>`)."""

    epochs: Positive  # the run's length when there is no time budget
    time_budget_s: Seconds  # > 0: this much training time alone sets the length (epochs unused)
    val_every_steps: Count  # validate (and log, keep the best) every this many steps; 0 = off
    val_every_s: Seconds  # ... and/or every this many seconds; both 0 = at each epoch's end
    processes: Count  # training processes (DDP); 1 = this one; 0 = one per GPU
    batch_size: Positive
    learning_rate: Annotated[float, Field(gt=0)]
    weight_decay: Annotated[float, Field(ge=0)]
    clip_grad_norm: Annotated[float, Field(gt=0)]
    label_smoothing: Fraction
    ema_decay: Fraction  # > 0: validate, keep and export a moving average of the weights
    aug_scale: Fraction
    aug_shear: Annotated[float, Field(ge=0, le=1)]
    aug_rotate_deg: Annotated[float, Field(ge=0, le=180)]
    aug_jitter: Annotated[float, Field(ge=0, le=64)]  # canvas units (0-255)
    aug_stroke_dropout: Fraction
    shuffle_buffer_blocks: Positive
    # 0: draw each drawing once per epoch; 1: every class equally often (a small class's
    # drawings repeat, a large one's are subsampled); between: weight n_class ** -class_balance
    class_balance: Annotated[float, Field(ge=0, le=1)]
    workers: Count  # DataLoader worker processes; 0 = load in the main process
    threads: Count  # torch threads per process; 0 = cores / processes - workers
    checkpoint_every_s: Seconds  # 0 = only at the end of each epoch
    seed: Seed


@dataclass(frozen=True, config=STRICT)
class EvaluateConfig:
    batch_size: Positive
    threads: Count  # torch threads on the CPU; 0 = every core
    gallery_size: Count


@dataclass(frozen=True, config=STRICT)
class PredictConfig:
    batch_size: Positive
    threads: Count  # torch threads on the CPU; 0 = every core
    tta: Count  # extra augmented passes averaged in; 0 = off
    prior_correction: bool  # push predictions towards a balanced test set
    seed: Seed


def _member_names(members: tuple[str, ...]) -> tuple[str, ...]:
    """Member names become stage names (train@gru) and folders (models/members/gru.pt)."""
    for name in members:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"must be names of letters, digits, '_' or '-' ({name!r} is not)")
    if len(set(members)) != len(members):
        raise ValueError("must not name a member twice")
    return members


@dataclass(frozen=True, config=STRICT)
class EnsembleConfig:
    members: Annotated[
        tuple[str, ...], AsTuple, Field(min_length=1), AfterValidator(_member_names)
    ]  # one train stage each (train@<name>), combined by the blend stage
    method: Literal["logreg", "weights", "mean"]  # how the blend stage combines the members
    regularization: Annotated[float, Field(gt=0)]  # logreg: inverse strength (sklearn's C)
    batch_size: Positive  # inference batch for the members' probabilities
    threads: Count  # torch threads on the CPU; 0 = every core
    # > 0: the members' training time in all, split by `time_shares` (each member's
    # `train.time_budget_s` is its part); 0: each member's own `train.time_budget_s`
    time_budget_s: Seconds
    # member -> its weight in that split; with a budget every member has one, so that a change
    # of members is a change of shares, which DVC sees (train@<member> depends on the shares)
    time_shares: dict[str, Annotated[float, Field(gt=0)]]
    flip_tta: Annotated[tuple[str, ...], AsTuple]  # members that average a drawing and its mirror

    def __post_init__(self) -> None:
        for key, names in (("time_shares", list(self.time_shares)), ("flip_tta", self.flip_tta)):
            strays = [n for n in names if n not in self.members]
            if strays:
                raise ConfigError(
                    f"param 'ensemble.{key}' names {strays[0]!r}, which is not in "
                    f"ensemble.members ({', '.join(self.members)})"
                )
        unshared = [n for n in self.members if n not in self.time_shares]
        if self.time_budget_s > 0 and unshared:
            example = ", ".join(f"{n}: {self.time_shares.get(n, 1):g}" for n in self.members)
            raise ConfigError(
                f"param 'ensemble.time_shares' gives {unshared[0]!r} no share of "
                f"ensemble.time_budget_s: name every member ({{{example}}}), so that changing "
                "the members changes the shares and DVC retrains the members whose time changed"
            )

    def member_budgets(self) -> dict[str, float]:
        """Each member's training seconds: `time_budget_s` split in proportion to the shares
        (parts add up to the whole; empty when there is no ensemble budget)."""
        if self.time_budget_s <= 0:
            return {}
        total = sum(self.time_shares[name] for name in self.members)
        return {name: self.time_budget_s * self.time_shares[name] / total for name in self.members}


SECTIONS: dict[str, type] = {
    "download": DownloadConfig,
    "preprocess": PreprocessConfig,
    "train": TrainConfig,
    "ensemble": EnsembleConfig,
    "evaluate": EvaluateConfig,
    "predict": PredictConfig,
}


def member_sections(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `members.<name>` mapping of each member of `ensemble.members`, in that order; every
    entry of the `members` section (used by the ensemble or not) must name its `model`.

    The keys themselves (the family's and any `train` key the member overrides) are checked by
    `pipeline.models.members.load_members`, which knows the families; this is what every stage
    can check without importing them.
    """
    ensemble = from_dict(EnsembleConfig, params.get("ensemble"), "ensemble")
    sections = params.get("members")
    if not isinstance(sections, dict):
        raise ConfigError("missing section 'members' (each ensemble member's model and its keys)")
    for name, own in sections.items():
        if not isinstance(own, dict):
            raise ConfigError(f"'members.{name}' must be a mapping of the member's keys")
        if not isinstance(own.get("model"), str):
            raise ConfigError(f"param 'members.{name}.model' must name a model family")
    missing = [name for name in ensemble.members if name not in sections]
    if missing:
        raise ConfigError(
            f"missing params 'members.{missing[0]}' (ensemble.members names it: its `model` and "
            "its family's keys)"
        )
    return {name: sections[name] for name in ensemble.members}


def member_train_config(
    params: dict[str, Any], overrides: dict[str, Any], name: str
) -> TrainConfig:
    """The `train` section with a member's own `train` keys on top; errors name the key where
    the user wrote it (`members.<name>.<key>` for an override)."""
    train = params.get("train")
    if not isinstance(train, dict):
        raise ConfigError("missing section 'train'")
    try:
        return from_dict(TrainConfig, {**train, **overrides}, "train")
    except ConfigError as err:
        text = str(err)
        for key in overrides:
            text = text.replace(f"'train.{key}'", f"'members.{name}.{key}'")
        raise ConfigError(text) from None


def validate_sections(params: dict[str, Any]) -> None:
    """Check every known section of a params dict, the members' outline and the `train` keys
    members override (`ConfigError`); the family keys are `load_members`'s to check."""
    for name in params.keys() & SECTIONS.keys():
        from_dict(SECTIONS[name], params[name], name)
    if "ensemble" in params:
        member_sections(params)
        train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
        for name, own in params["members"].items():
            member_train_config(params, {k: v for k, v in own.items() if k in train_keys}, name)


def set_dotted(params: dict[str, Any], dotted: str, value: Any) -> None:
    """`params["a"]["b"]["c"] = value` for "a.b.c", making the mappings on the way (as
    `dvc exp run -S a.b.c=value` does)."""
    *parents, key = dotted.split(".")
    node = params
    for name in parents:
        node = node.setdefault(name, {})
    node[key] = value


def flatten(values: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested keys joined: {"members": {"cnn": {"image_size": 128}}} -> {"members.cnn.image_size":
    128}, as `dvc exp run -S` and DVC's params tracking name them."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}{sep}", sep)
        else:
            out[name] = value
    return out


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
    """Build `cls` from a dict; the first problem is a `ConfigError` naming its key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix}' must be a mapping, got {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown param '{prefix}.{unknown[0]}' (known: {', '.join(names)})")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"missing param '{prefix}.{missing[0]}'")
    try:
        return cls(**raw)
    except ValidationError as err:
        raise _param_error(err, cls, prefix) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config, tuples as lists (for checkpoints, store metadata, YAML)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _param_error(err: ValidationError, cls: type, prefix: str) -> ConfigError:
    """pydantic's first error as one line: param 'train.batch_size' must be >= 1, got 0."""
    first = err.errors(include_url=False)[0]
    loc = first["loc"]
    key = prefix + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc)
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in first.get("ctx", {}).items()}
    hint = typing.get_type_hints(cls, include_extras=True).get(str(loc[0]))
    choices = list(typing.get_args(hint)) if typing.get_origin(hint) is Literal else []
    rules = {
        "greater_than_equal": f">= {ctx.get('ge')}",
        "greater_than": f"> {ctx.get('gt')}",
        "less_than_equal": f"<= {ctx.get('le')}",
        "less_than": f"< {ctx.get('lt')}",
        "finite_number": "a finite number",
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "tuple_type": "a list",
        "literal_error": f"one of {choices}",
        "too_short": f"a list of at least {ctx.get('min_length')} item(s)",
    }
    if first["type"] in rules:
        rule = f"must be {rules[first['type']]}"
    else:  # a custom validator's message ("must be odd ..."), or pydantic's own words
        rule = str(first["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    return ConfigError(f"param '{key}' {rule}, got {first['input']!r}")
