"""Imports go down the layers, never up (docs/DESIGN.md "The layers").

    common                              params, paths, errors, files, the command line
    core                                drawings, the store, Kaggle's layout, reject reasons,
                                          encoders (features, images)
    sources  ingest  scoring            where drawings come from; CSV -> store; MAP@3 and blends
    models                              families, checkpoints, members, the predictor
    training                            the training engine
    serve                               the play page and API
    pipeline/*.py                       stages and commands (download ... predict, submit, ...)

A module may import its own package and the layers below it; packages on one layer do not
import each other. Every import counts, function-level ones too (`imported_modules` of the
dvc.yaml test, which reads them the same way).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_DIR
from tests.test_dvc_yaml import imported_modules

LAYERS: dict[str, int] = {
    "common": 0,
    "core": 1,
    "sources": 2,
    "ingest": 2,
    "scoring": 2,
    "models": 3,
    "training": 4,
    "serve": 5,
}
TOP = max(LAYERS.values()) + 1  # the stage modules, pipeline/<name>.py


def package_of(module: str) -> str:
    """`pipeline.core.store` -> "core"; a stage module `pipeline.train` -> "" (the top)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def layer_of(module: str) -> int:
    return LAYERS[package_of(module)] if package_of(module) else TOP


def modules(root: Path = REPO_DIR) -> list[tuple[str, Path]]:
    found = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found.append((".".join(parts), path))
    return found


def upward_imports(root: Path = REPO_DIR) -> list[str]:
    problems = []
    for module, path in modules(root):
        here = package_of(module)
        if module == "pipeline":
            continue
        for target in sorted(imported_modules(path, module, root)):
            there = package_of(target)
            if target == "pipeline" or there == here:
                continue
            if layer_of(target) >= layer_of(module):
                problems.append(
                    f"{module} (layer {layer_of(module)}) imports {target} "
                    f"(layer {layer_of(target)})"
                )
    return problems


def test_every_package_is_on_a_layer() -> None:
    packages = {p.name for p in (REPO_DIR / "pipeline").iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_no_import_runs_up_or_across_the_layers() -> None:
    problems = upward_imports()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("pipeline/core/store.py", "from pipeline.models.checkpoint import load_model"),
        ("pipeline/sources/ndjson.py", "from pipeline.ingest.rows import read_rows"),
        ("pipeline/models/rnn.py", "from pipeline.training import trainer"),
        ("pipeline/common/paths.py", "from pipeline.core.store import DrawingStore"),
    ],
)
def test_the_check_catches_an_import_up_or_across(tmp_path: Path, module: str, line: str) -> None:
    # A copy of the package with one bad import added: the check names it.
    import shutil

    shutil.copytree(REPO_DIR / "pipeline", tmp_path / "pipeline")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n\ndef _late() -> None:\n    {line}\n")
    problems = upward_imports(tmp_path)
    name = module.removesuffix(".py").replace("/", ".")
    assert any(p.startswith(name) for p in problems), problems
