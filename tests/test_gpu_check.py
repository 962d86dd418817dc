"""benchmarks/gpu_check, the GPU readiness check, on the CPU with tiny sizes: every section runs
the pipeline's own code and the report has its figures (the real check runs on a GPU machine)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check.gpumon import GpuMonitor
from benchmarks.gpu_check.members import (
    resolve_preset,
    run_params,
    select_members,
    with_member_keys,
)
from benchmarks.gpu_check.procs import run_bounded

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
    "ddp_s": 3.0,
}


def _check_report(report: dict, out: Path, member: str) -> None:
    saved = json.loads(out.read_text())  # the same figures, rounded
    assert set(saved) == set(report) and len(saved["train_step"]) == len(report["train_step"])
    assert saved["loop"][0]["steps"] == report["loop"][0]["steps"]
    assert report["store"]["source"] == "synthetic" and report["store"]["train"] > 0
    rows = [r for r in report["train_step"] if not r["compile"]]
    paths = ["padded", "fused"] if member != "cnn" else ["-"]
    assert [(r["member"], r["model"], r["path"], r["batch"]) for r in rows] == [
        (member, member, path, 32) for path in paths
    ]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["steps"] >= 1, row
        assert row["peak_mem_mib"] is None  # CPU
    (pipe,) = report["input_pipeline"]
    assert pipe["workers"] == 0 and pipe["drawings_per_s"] > 0 and pipe["members"] == [member]
    (loop,) = report["loop"]
    assert loop["note"] == "" and loop["steps"] > 0 and loop["steps_per_s"] > 0
    assert loop["samples_per_s"] > 0 and 0 < loop["val_share"] < 1  # the trainer's summary
    assert set(report["sections_s"]) == {
        "store",
        "train_step",
        "input_pipeline",
        "loop",
        "ddp",
        "stage",
        "compile",
    }
    table = gpu_check.tables(report)
    assert f"| {member} | " in table and "| input pipeline |" in table and "| DDP |" in table


def test_quick_cpu_check_reports_every_step(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    report = gpu_check.run(
        device="cpu",
        quick=True,
        members=["gru"],
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
    settings |= {"stage_s": 2.0}
    report = gpu_check.run(
        device="cpu",
        quick=True,
        members=["cnn"],
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
    # The member's train stage in a process of its own, as the device run trains each member.
    (stage,) = report["stage"]
    assert stage["status"] == "ok" and stage["samples_per_s"] > 0, stage
    assert 0 < stage["val_share"] < 1 and stage["max_rss_mib"] > 100
    assert stage["peak_mem_mib"] is None and "gpu_util_mean" not in stage  # no GPU here
    assert "| train stage |" in gpu_check.tables(report)


def test_gpu_preset_is_the_default_on_cuda_and_measures_its_members() -> None:
    assert resolve_preset("auto", torch.device("cuda", 0)) == "full-gpu"
    assert resolve_preset("auto", torch.device("cpu")) is None
    assert resolve_preset("none", torch.device("cuda", 0)) is None
    params, members = select_members(run_params("full-gpu"), None)
    assert list(members) == ["gru", "bilstm", "cnn"]
    cnn, bilstm = members["cnn"].model_cfg, members["bilstm"].model_cfg
    assert (cnn.backbone, cnn.image_size) == ("resnet34d", 128)
    assert (bilstm.hidden_size, bilstm.num_layers) == (256, 3)
    assert members["cnn"].family.fixed_shape  # channels_last and cuDNN autotuning on CUDA
    # A member's own budget in the preset (the cnn's 12 h) gives way to the check's.
    timed = with_member_keys(params, ["cnn"], time_budget_s=90)
    assert timed["members"]["cnn"]["time_budget_s"] == 90
    assert timed["ensemble"]["members"] == ["cnn"]
    _, only = select_members(params, ["cnn"], image_size=64)
    assert list(only) == ["cnn"] and only["cnn"].model_cfg.image_size == 64


def test_gpu_monitor_reads_nvidia_smi_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nvidia-smi"  # what `nvidia-smi --query-gpu=... -lms=250` prints
    fake.write_text('#!/bin/sh\nfor u in 0 80 90 0; do echo "$u, 1200"; done\nexec sleep 30\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with GpuMonitor() as mon:
        deadline = time.monotonic() + 10
        while len(mon.samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = mon.stats()
    assert stats["gpu_util_mean"] == pytest.approx(42.5)
    assert stats["gpu_util_active_mean"] == pytest.approx(85)  # start-up and exit left out
    assert stats["gpu_mem_max_mib"] == 1200 and stats["gpu_samples"] == 4
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    with GpuMonitor() as mon:
        pass
    assert mon.stats() == {}


def test_a_child_past_its_time_box_is_killed_with_its_group(tmp_path: Path) -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    done = run_bounded([sys.executable, "-c", script], tmp_path, dict(os.environ), 1.0)
    assert done.code == "timeout" and done.wall_s < 10 and done.max_rss_mib > 1
    ok = run_bounded(
        [sys.executable, "-c", "print('hi')"], tmp_path, dict(os.environ), 30, tmp_path / "log"
    )
    assert ok.code == 0 and ok.log == "hi\n"
