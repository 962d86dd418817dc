"""Model families, picked by name (`members.<name>.model`). A new family is one module that
defines its `Family` (`pipeline.models.family`: config, build, encoder) and one line here.

Every family's model takes its config and `forward(x, lengths) -> logits (B, n_classes)`; the
loss lives in training.
"""

from __future__ import annotations

from pipeline.common.errors import ConfigError
from pipeline.models.cnn import CNN
from pipeline.models.family import Family
from pipeline.models.rnn import BILSTM, GRU

FAMILIES: dict[str, Family] = {
    "gru": GRU,
    "bilstm": BILSTM,
    "cnn": CNN,
}


def family(name: str, key: str = "model") -> Family:
    """The family registered as `name`; a `ConfigError` naming the param `key` if none."""
    if name not in FAMILIES:
        raise ConfigError(f"param '{key}' must be one of {list(FAMILIES)}, got {name!r}")
    return FAMILIES[name]
