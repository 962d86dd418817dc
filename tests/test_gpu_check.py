"""benchmarks/gpu_check.py, the GPU readiness check, on the CPU with tiny sizes: every step runs
and the report has its figures (the real check runs on a GPU machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_check

TINY = {  # Settings overrides: a few seconds per step
    "synthetic_classes": 4,
    "synthetic_per_class": 60,
    "val_per_class": 5,
    "block_size": 64,
    "batches": (32,),
    "prebuilt": 1,
    "warmup_steps": 1,
    "max_steps": 2,
    "case_s": 0.1,
    "compile": "none",
    "workers": (0,),
    "pipeline_s": 0.3,
    "loop_s": 1.5,
    "loop_batch": 32,
    "ddp_s": 3.0,
}


def _check_report(report: dict, out: Path, family: str) -> None:
    saved = json.loads(out.read_text())  # the same figures, rounded
    assert set(saved) == set(report) and len(saved["train_step"]) == len(report["train_step"])
    assert saved["loop"][0]["steps"] == report["loop"][0]["steps"]
    assert report["store"]["source"] == "synthetic" and report["store"]["train"] > 0
    rows = [r for r in report["train_step"] if not r["compile"]]
    assert [(r["family"], r["path"], r["batch"]) for r in rows] == [
        (family, path, 32) for path in gpu_check.family_paths(family)
    ]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["steps"] >= 1, row
        assert row["peak_mem_mib"] is None  # CPU
    (pipe,) = report["input_pipeline"]
    assert pipe["workers"] == 0 and pipe["drawings_per_s"] > 0 and pipe["families"] == [family]
    (loop,) = report["loop"]
    assert loop["note"] == "" and loop["steps"] > 0 and loop["steps_per_s"] > 0
    assert loop["samples_per_s"] > 0
    assert set(report["sections_s"]) == {
        "store",
        "train_step",
        "input_pipeline",
        "loop",
        "ddp",
        "compile",
    }
    table = gpu_check.tables(report)
    assert f"| {family} | " in table and "| input pipeline |" in table and "| DDP |" in table


def test_quick_cpu_check_reports_every_step(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    report = gpu_check.run(
        device="cpu",
        quick=True,
        families=["gru"],
        out=out,
        source="synthetic",
        print_tables=False,
        **TINY,
    )
    _check_report(report, out, "gru")
    assert report["ddp"]["status"].startswith("skipped (1 device")
    assert report["env"]["device"] == "cpu" and report["env"]["amp"] == "fp32"


@pytest.mark.slow
def test_compile_case_and_gloo_ddp(tmp_path: Path) -> None:
    # The compiled case runs in its own process (aot_eager on the CPU: the code path, not
    # inductor); DDP runs the train stage under torchrun with 2 gloo ranks.
    out = tmp_path / "gpu_check.json"
    settings = TINY | {"compile": "one", "compile_backend": "aot_eager", "budget_s": 600.0}
    report = gpu_check.run(
        device="cpu",
        quick=True,
        families=["cnn"],
        out=out,
        source="synthetic",
        ddp_cpu=True,
        print_tables=False,
        image_size=32,
        **settings,
    )
    _check_report(report, out, "cnn")
    (compiled,) = [r for r in report["train_step"] if r["compile"]]
    assert compiled["samples_per_s"] > 0, compiled
    assert compiled["note"] == "backend aot_eager"
    ddp = report["ddp"]
    assert ddp["status"] == "ok" and ddp["processes"] == 2 and ddp["samples_per_s"] > 0, ddp
