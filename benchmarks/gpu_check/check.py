"""The whole check: the store, then each section in turn, the report saved after every case."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check import compiled, inputs, loop, stage, steps
from benchmarks.gpu_check.env import environment, pick_device, say
from benchmarks.gpu_check.members import (
    describe,
    resolve_preset,
    rnn_paths,
    run_params,
    select_members,
)
from benchmarks.gpu_check.report import tables, write
from benchmarks.gpu_check.settings import DEFAULT_OUT, Settings, settings_for
from benchmarks.gpu_check.store import build_store
from pipeline.models.members import MemberConfig


class Check:
    """One run's device, settings, params, members and report, and its sections."""

    def __init__(
        self,
        dev: torch.device,
        s: Settings,
        preset: str | None,
        names: list[str] | None,
        quick: bool,
    ) -> None:
        self.dev, self.s = dev, s
        self.params, self.members = select_members(run_params(preset), names, s.image_size)
        steps.setup(dev, self.members)
        self.t0 = time.perf_counter()
        self.report: dict[str, Any] = {
            "env": environment(dev),
            "quick": quick,
            "preset": preset,
            "settings": dataclasses.asdict(s),
            "members": {name: describe(m) for name, m in self.members.items()},
            "train_step": [],
            "input_pipeline": [],
            "loop": [],
            "ddp": None,
            "stage": [],
            "sections_s": {},
        }
        self.save: Callable[[], None] = lambda: None

    def section(self, name: str) -> None:
        """Close the section `name`: its seconds, and the report saved."""
        done = sum(self.report["sections_s"].values())
        self.report["sections_s"][name] = time.perf_counter() - self.t0 - done
        self.save()

    def train_steps(self, store_path: Path) -> None:
        cases = steps.TrainSteps(self.dev, self.s, self.members, store_path)
        for name, member in self.members.items():
            for path in rnn_paths(member):
                for batch in self.s.batches:
                    self.report["train_step"].append(cases.case(name, path, batch, False))
                    self.save()

    def input_pipeline(self, store_path: Path) -> None:
        by_encoder: dict[Any, list[MemberConfig]] = {}
        for member in self.members.values():
            by_encoder.setdefault((member.encoder(), member.train.batch_size), []).append(member)
        for group in by_encoder.values():
            for workers in self.s.workers:
                row = inputs.pipeline_case(
                    store_path, group[0], workers, self.s.pipeline_s, self.dev.type == "cuda"
                )
                row["members"] = [m.name for m in group]
                self.report["input_pipeline"].append(row)
                rate = f"{row['drawings_per_s']:,.0f} drawings/s" if row["drawings_per_s"] else "-"
                say(f"input pipeline {row['input']} workers {workers}: {rate} {row['note']}")
                self.save()

    def training_loop(self, store_path: Path, work: Path) -> None:
        for member in self.members.values():
            row = loop.loop_case(store_path, work, member, self.s.loop_s)
            self.report["loop"].append(row)
            rate = f"{row['samples_per_s']:,.0f} samples/s" if row["samples_per_s"] else "-"
            say(f"training loop {member.name}: {rate} {row['note']}")
            self.save()

    def compiled(self, store_path: Path, work: Path) -> None:
        left = self.s.budget_s - (time.perf_counter() - self.t0)
        rows = compiled.compile_cases(
            self.dev, self.s, self.params, self.members, store_path, work, left
        )
        self.report["train_step"] += rows
        pairs = [(m, p) for m in self.members for p in rnn_paths(self.members[m])]
        self.report["train_step"].sort(
            key=lambda r: (pairs.index((r["member"], r["path"])), r["batch"], r["compile"])
        )


def run(
    device: str = "auto",
    quick: bool = False,
    members: list[str] | None = None,
    out: Path | None = DEFAULT_OUT,
    source: str = "auto",
    ddp_cpu: bool = False,
    preset: str | None = "auto",
    work: Path | None = None,
    print_tables: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Every section; returns the report (also written to `out` unless None). `overrides`
    replace fields of `Settings` (e.g. `batches=(32,)`, `compile="none"`); `work` keeps the
    store and the runs' folders there (a store already there is used) instead of a temp folder."""
    dev = pick_device(device)
    s = dataclasses.replace(settings_for(dev, quick), **overrides)
    check = Check(dev, s, resolve_preset(preset, dev), members, quick)
    report = check.report
    if out is not None:
        check.save = lambda: write(out, report)
    folder = tempfile.TemporaryDirectory(prefix="gpu-check-") if work is None else None
    try:
        root = Path(folder.name) if folder else work
        root.mkdir(parents=True, exist_ok=True)
        _sections(check, root, source, ddp_cpu)
    finally:  # stopped early too (a deadline's SIGTERM, Ctrl-C): what was measured, in tables
        report["wall_s"] = time.perf_counter() - check.t0
        check.save()
        if print_tables:
            print(tables(report), flush=True)
        if folder:
            folder.cleanup()
    return report


def _sections(check: Check, work: Path, source: str, ddp_cpu: bool) -> None:
    s, report = check.s, check.report
    say(f"building a store ({source}) ...")
    report["store"] = st = build_store(work, source, s, check.params)
    store_path = Path(st["path"])
    say(
        f"store: {st['source']}, {st['classes']} classes, {st['train']:,} train drawings, "
        f"{st['blocks']} blocks, {st['build_s']:.1f} s"
    )
    check.section("store")
    if s.stage_s > 0:  # the run's own figures first: a deadline takes the diagnostics, not them
        for row in stage.stage_runs(
            store_path, work, check.params, check.members, check.dev, s.stage_s
        ):
            report["stage"].append(row)
            check.save()
    check.section("stage")
    check.train_steps(store_path)  # compile off; the compiled cases come last, time allowing
    check.section("train_step")
    check.input_pipeline(store_path)
    check.section("input_pipeline")
    if s.loop_s > 0:
        check.training_loop(store_path, work)
    check.section("loop")
    say("DDP ...")
    report["ddp"] = stage.ddp_run(
        store_path, work, check.params, check.members, check.dev, s.ddp_s, ddp_cpu
    )
    say(f"DDP: {report['ddp']['status']}")
    check.section("ddp")
    check.compiled(store_path, work)
    check.section("compile")
