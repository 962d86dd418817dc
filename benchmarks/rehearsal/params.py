"""The params.yaml of a rehearsal run: the repo's own, with the few keys the rehearsal overrides.

Kept to one function on purpose: the params layout is the pipeline's and it changes (family keys
moving from `train:` into `members.<name>:`); the rehearsal only overrides sections' keys here
and takes everything else as the repo has it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.kaggle16 import REPO_DIR
from benchmarks.rehearsal.competition import BLEND_PER_CLASS, VAL_PER_CLASS


def write_params(
    run_dir: Path, data_dir: Path, members: list[str], train_s: float, blend_method: str | None
) -> Path:
    """The repo's params.yaml with the rehearsal's overrides, in `run_dir`."""
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    params["download"] |= {"source": "local", "path": str(data_dir)}
    params["preprocess"] |= {
        "val_per_class": VAL_PER_CLASS,
        "blend_per_class": BLEND_PER_CLASS,
        "max_per_class": 0,
    }
    # Validate only at the end of the budget: 17,000 val drawings would eat a short one.
    params["train"] |= {
        "time_budget_s": float(train_s),
        "val_every_steps": 0,
        "val_every_s": float(train_s) * 100 + 3600.0,
    }
    params["ensemble"]["members"] = list(members)
    if params["ensemble"].get("time_budget_s"):  # an ensemble budget would replace train_s
        params["ensemble"]["time_budget_s"] = 0
    if blend_method:
        params["ensemble"]["method"] = blend_method
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
