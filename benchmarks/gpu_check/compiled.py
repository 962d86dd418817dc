"""Section 6: the train step under `torch.compile`, last and in a child process given what is left
of the run's time budget (`--compile-worker`): a compile that overruns is killed, a crash stays
there, and the cases it did not reach say so."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.env import amp_name, pick_device
from benchmarks.gpu_check.members import rnn_paths
from benchmarks.gpu_check.procs import repo_env, run_bounded
from benchmarks.gpu_check.settings import Settings, from_dict
from benchmarks.gpu_check.steps import TrainSteps, setup, step_row
from benchmarks.kaggle16 import REPO_DIR
from pipeline.models.members import MemberConfig, load_members
from pipeline.training import distributed as D

Case = tuple[str, str, int]  # (member, RNN path, batch)


def compile_plan(members: dict[str, MemberConfig], s: Settings) -> list[Case]:
    """The cases that also run compiled, most useful first: fixed-shape image models, then each
    sequence member's padded path (plain tensor ops inductor can fuse), then the fused cuDNN
    path (packing reads lengths on the host: graph breaks expected)."""
    if s.compile == "none":
        return []
    order = ["-", "padded", "fused"]
    cases = sorted(
        ((m, p) for m in members for p in rnn_paths(members[m])), key=lambda c: order.index(c[1])
    )
    if s.compile == "one":  # quick: prove the code path on the smallest case
        cases = [c for c in cases if c[1] == "padded"][:1] or cases[:1]
        return [(m, p, min(s.batches)) for m, p in cases]
    return [(m, p, max(s.batches)) for m, p in cases]


def skipped(member: MemberConfig, path: str, batch: int, amp: str, note: str) -> dict[str, Any]:
    return step_row(member, path, batch, True, amp) | {"note": note}


def compile_cases(
    dev: torch.device,
    s: Settings,
    params: dict[str, Any],
    members: dict[str, MemberConfig],
    store_path: Path,
    work: Path,
    seconds_left: float,
) -> list[dict[str, Any]]:
    plan = compile_plan(members, s)
    amp = amp_name(D.amp_dtype(dev))
    box = f"skipped (time box: --budget-s {s.budget_s:.0f})"
    if not plan or seconds_left < s.compile_cost_s:
        return [skipped(members[m], p, b, amp, box) for m, p, b in plan]
    rows_path = work / "compile_rows.jsonl"
    spec = {
        "device": str(dev),
        "settings": s.__dict__,
        "params": params,
        "store": str(store_path),
        "cases": plan,
        "rows": str(rows_path),
    }
    (work / "compile_spec.json").write_text(json.dumps(spec))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--compile-worker"]
    status = run_bounded(
        [*cmd, str(work / "compile_spec.json")], REPO_DIR, repo_env(), seconds_left
    ).code
    rows = (
        [json.loads(line) for line in rows_path.read_text().splitlines()]
        if rows_path.is_file()
        else []
    )
    done = {(r["member"], r["path"], r["batch"]) for r in rows}
    missing = [c for c in plan if tuple(c) not in done]
    for i, (m, p, b) in enumerate(missing):
        note = box
        if i == 0 and status == "timeout":
            note = f"stopped: time box (--budget-s {s.budget_s:.0f}) reached while running it"
        elif i == 0 and status != 0:
            note = f"compile process died ({status}) in this case"
        rows.append(skipped(members[m], p, b, amp, note))
    return rows


def compile_worker(spec_path: Path) -> None:
    """The child of `compile_cases`: each planned case, one JSON line as it finishes."""
    from benchmarks.gpu_check.report import rounded

    spec = json.loads(spec_path.read_text())
    dev = pick_device(spec["device"])
    members = load_members(spec["params"])
    setup(dev, members)
    steps = TrainSteps(dev, from_dict(spec["settings"]), members, Path(spec["store"]))
    with open(spec["rows"], "a") as out:
        for member, path, batch in spec["cases"]:
            row = steps.case(member, path, batch, True)
            out.write(json.dumps(rounded(row)) + "\n")
            out.flush()
