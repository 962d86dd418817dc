"""dvc.yaml says what each stage reads and writes, and it must be true: every module a stage runs
is one of its deps (else `dvc repro` would keep outputs made by old code), no dep is stale, and
the metrics and outputs are where `pipeline.common.paths` writes them.

The code deps are exactly the stage's import closure within `pipeline/` (function-level imports
and registry strings such as "pipeline.models:MODELS" included; `__init__.py` files that hold
only a docstring left out). When this fails it prints the list to paste.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from pipeline.common.paths import STAGES, Paths
from tests.conftest import REPO_DIR

PACKAGE = "pipeline"
REGISTRY = re.compile(r"^(pipeline(?:\.\w+)+):\w+$")  # config names registries by string


def module_file(module: str, root: Path = REPO_DIR) -> Path | None:
    """The file of a `pipeline.*` module (module.py or package/__init__.py), or None."""
    base = root / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, module: str, root: Path = REPO_DIR) -> set[str]:
    """Every `pipeline.*` module the file imports, anywhere in it (lazy imports too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, base] if base else parts)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REGISTRY.match(node.value)
            names = [match.group(1)] if match else []
        found |= {n for n in names if n.split(".")[0] == PACKAGE and module_file(n, root)}
    return found


def import_closure(module: str, root: Path = REPO_DIR) -> set[Path]:
    """Files of `module`, everything it imports transitively, and their packages' __init__s."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            path = module_file(prefix, root)
            assert path is not None, prefix
            todo += sorted(imported_modules(path, prefix, root) - seen)
    files = {module_file(name, root) for name in seen}
    return {f for f in files if f is not None and not _docstring_only(f)}


def _docstring_only(path: Path) -> bool:
    """An `__init__.py` that only documents its package: running it changes nothing."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def body(stage: dict) -> dict:
    """A stage's definition; a `foreach` stage (train@<member>) keeps it under `do`."""
    return stage.get("do", stage)


def stage_code_deps(stage: dict, root: Path = REPO_DIR) -> list[str]:
    """The code deps a dvc.yaml stage should list, from the module its `cmd` runs."""
    match = re.search(r"-m (pipeline(?:\.\w+)+)", body(stage)["cmd"])
    assert match, f"cannot find `-m pipeline.<stage>` in cmd {stage['cmd']!r}"
    return sorted(str(p.relative_to(root)) for p in import_closure(match.group(1), root))


def code_dep_problems(dvc_yaml: dict, root: Path = REPO_DIR) -> list[str]:
    """What is wrong with the code deps of every stage (an empty list when all is right).

    A dep may be a module or a folder (`pipeline/common`) whose every module the stage imports.
    """
    problems = []
    for name, stage in dvc_yaml["stages"].items():
        listed = {d for d in body(stage).get("deps", []) if d.startswith(f"{PACKAGE}/")}
        expected = set(stage_code_deps(stage, root))
        for folder in [d for d in listed if (root / d).is_dir()]:
            inside = {str(p.relative_to(root)) for p in (root / folder).rglob("*.py")}
            inside = {f for f in inside if not _docstring_only(root / f)}
            if inside <= expected:  # the folder stands for exactly those modules
                listed = (listed - {folder}) | inside
        missing, stale = sorted(expected - listed), sorted(listed - expected)
        if missing or stale:
            problems.append(
                f"stage {name}: missing {missing}, not imported {stale}; its code deps are:\n"
                + "\n".join(f"      - {d}" for d in sorted(expected))
            )
    return problems


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((REPO_DIR / "dvc.yaml").read_text())


def test_every_module_a_stage_imports_is_a_dep_and_no_dep_is_stale(dvc_yaml: dict) -> None:
    problems = code_dep_problems(dvc_yaml)
    assert not problems, "\n".join(problems)


def test_the_check_fails_when_a_module_is_left_out(dvc_yaml: dict) -> None:
    # Drop one module from the train stage: the check must name it.
    stage = body(dvc_yaml["stages"]["train"])
    dropped = "pipeline/scoring/metrics.py"  # training validates with it
    assert dropped in stage["deps"]
    kept = [d for d in stage["deps"] if d != dropped]
    broken = {"stages": {"train": {**stage, "deps": kept}}}
    (problem,) = code_dep_problems(broken)
    assert f"missing ['{dropped}']" in problem


def test_a_folder_dep_counts_only_when_the_stage_runs_all_of_it(dvc_yaml: dict) -> None:
    # `pipeline/scoring` holds reports.py, which training never runs: not a valid train dep.
    stage = body(dvc_yaml["stages"]["train"])
    deps = [d for d in stage["deps"] if d != "pipeline/scoring/metrics.py"] + ["pipeline/scoring"]
    (problem,) = code_dep_problems({"stages": {"train": {**stage, "deps": deps}}})
    assert "missing ['pipeline/scoring/metrics.py'], not imported ['pipeline/scoring']" in problem


def test_lazy_imports_and_registry_strings_count(tmp_path: Path) -> None:
    # A module that imports one thing inside a function and names a registry by string.
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Docstring only."""\n')
    (pkg / "sub" / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "lazy.py").write_text("")
    (pkg / "sub" / "named.py").write_text("")
    (pkg / "stage.py").write_text(
        "def f():\n    from pipeline.sub import lazy\n\nREG = 'pipeline.sub.named:THINGS'\n"
    )
    files = {str(p.relative_to(tmp_path)) for p in import_closure("pipeline.stage", tmp_path)}
    assert files == {
        "pipeline/stage.py",
        "pipeline/sub/__init__.py",
        "pipeline/sub/lazy.py",
        "pipeline/sub/named.py",
    }


def test_stages_are_the_pipeline_in_order(dvc_yaml: dict) -> None:
    assert list(dvc_yaml["stages"]) == list(STAGES)
    for name, stage in dvc_yaml["stages"].items():
        assert body(stage)["cmd"].startswith(f"python -m pipeline.{name}")


def test_one_train_stage_per_member_with_its_own_params_and_outputs(dvc_yaml: dict) -> None:
    train = dvc_yaml["stages"]["train"]
    assert train["foreach"] == "${ensemble.members}"
    member = Paths.under(".").for_member("${item}")
    assert train["do"]["cmd"] == "python -m pipeline.train --member ${item}"
    # A member reruns on its own section, its family's keys and the ensemble's time split only.
    assert train["do"]["params"] == [
        "train",
        "members.${item}",
        "ensemble.time_budget_s",
        "ensemble.time_shares",
    ]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in train["do"]["outs"]]
    assert outs == [str(member.model_path), str(member.live_dir / "curves.tsv")]
    assert [next(iter(m)) for m in train["do"]["metrics"]] == [str(member.metrics_path("train"))]
    # The blend reads every member's model; evaluate and predict read the blend and the members.
    assert str(Paths.under(".").members_dir) in dvc_yaml["stages"]["blend"]["deps"]
    assert str(Paths.under(".").blend_path) in dvc_yaml["stages"]["blend"]["outs"]
    for stage in ("evaluate", "predict"):
        assert str(Paths.under(".").models_dir) in dvc_yaml["stages"][stage]["deps"]


def test_metrics_and_outputs_are_where_the_stages_write_them(dvc_yaml: dict) -> None:
    paths = Paths.under(".")
    stages = {name: body(stage) for name, stage in dvc_yaml["stages"].items() if name != "train"}
    for name, stage in stages.items():
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in stage["metrics"]]
        assert metrics == [str(paths.metrics_path(name))], name
    outs = {
        name: {next(iter(o)) if isinstance(o, dict) else o for o in body(stage).get("outs", [])}
        for name, stage in dvc_yaml["stages"].items()
    }
    assert str(paths.raw_dir) in outs["download"]
    assert str(paths.processed_dir) in outs["preprocess"]
    # checkpoints/ is the stage's resume state, not an output: DVC neither deletes it before a
    # rerun (a killed run resumes) nor needs it to restore the stage from its cache.
    assert not any(o.startswith(str(paths.checkpoint_dir)) for o in outs["train"])
    for stage in dvc_yaml["stages"].values():
        assert not any(
            isinstance(o, dict) and next(iter(o.values())).get("persist")
            for o in body(stage).get("outs", [])
        )
    assert str(paths.submission_csv) in outs["predict"]


def test_the_submit_metrics_are_a_top_level_metric(dvc_yaml: dict) -> None:
    # `pipeline.submit` is a command, not a stage: its metrics file is listed on its own, so
    # `dvc metrics show` puts the leaderboard score beside the stages' scores.
    assert dvc_yaml["metrics"] == [str(Paths.under(".").submit_metrics_path)]
    stage_metrics = [m for stage in dvc_yaml["stages"].values() for m in body(stage)["metrics"]]
    assert "metrics/submit.json" not in str(stage_metrics)
