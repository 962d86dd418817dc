"""Named params presets (not a stage): `python -m pipeline.preset NAME [--apply]`.

`configs/<NAME>.yaml` holds only the keys a preset changes (`kaggle16-cpu`, `smoke`, `full-gpu`,
`full-multigpu`). Printed as `-S` arguments, it makes one experiment without touching
`params.yaml`; `--apply` writes it into `params.yaml` instead, so `dvc repro` uses it:

    dvc exp run $(python -m pipeline.preset kaggle16-cpu)
    python -m pipeline.preset full-gpu --apply && dvc repro

Either way every value is checked against its section's params first (`error:` on a bad one).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.config import SECTIONS, flatten, load_params, set_dotted
from pipeline.common.errors import ConfigError
from pipeline.common.files import atomic_file
from pipeline.models.members import load_members

PRESETS_DIR = Path("configs")


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict[str, dict[str, Any]]:
    path = presets_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in presets_dir.glob("*.yaml"))
        raise ConfigError(f"no preset {name!r} in {presets_dir}/ (known: {', '.join(known)})")
    preset = yaml.safe_load(path.read_text()) or {}
    for section, values in preset.items():
        if section not in (*SECTIONS, "members") or not isinstance(values, dict):
            raise ConfigError(f"{path}: {section!r} is not a params section with values")
    return preset


def merged(params: dict[str, Any], preset: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`params` with the preset's keys replaced, every section validated."""
    out = copy.deepcopy(params)
    for dotted, value in flatten(preset).items():
        set_dotted(out, dotted, value)
    load_members(out)  # every section and member checked: ConfigError naming a bad key
    return out


def apply(params_path: Path, preset: dict[str, dict[str, Any]]) -> None:
    """Write the preset's values into the params file in place, comments and order kept
    (ruamel.yaml's round trip, as DVC itself edits params files)."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    document = rt.load(params_path.read_text())
    for dotted, value in flatten(preset).items():
        set_dotted(document, dotted, value)
    with atomic_file(params_path) as f:
        rt.dump(document, f)


def set_args(preset: dict[str, dict[str, Any]]) -> list[str]:
    """`-S section.key=value` for each preset value, YAML without spaces (shell word splitting)."""
    args = []
    for key, value in flatten(preset).items():
        text = json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value
        args += ["-S", f"{key}={text}"]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("name", help="a preset in configs/, without .yaml")
    parser.add_argument("--apply", action="store_true", help="write it into the params file")
    args = parser.parse_args(argv)
    with user_errors():
        preset = load_preset(args.name)
        params = merged(load_params(args.params), preset)
        del params  # validated; --apply edits the file itself, keeping its comments
        if args.apply:
            apply(args.params, preset)
            print(f"{args.params}: preset {args.name} applied", file=sys.stderr)
        else:
            print(" ".join(set_args(preset)))


if __name__ == "__main__":
    main()
