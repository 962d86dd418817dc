"""The check's report: JSON (rewritten after every case, so a crash keeps what was measured) and
markdown tables, one per section."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.settings import MODEL_CLASSES, REAL_POINTS_MEAN


def rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v) for v in x]
    return x


def write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(rounded(report), indent=2) + "\n")
    tmp.replace(out)


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _mib(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f} MiB"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


Column = tuple[str, Callable[[dict[str, Any]], str]]  # header, cell of a row


def _table(columns: list[Column], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "| " + " | ".join(h for h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows]


def _input(r: dict[str, Any]) -> str:
    size = f" {r['image_size']}px" if r["image_size"] else ""
    return f"{r['input']}{size} ({', '.join(r.get('members', []))})"


def _member(r: dict[str, Any]) -> str:
    return r["member"] if r["member"] == r["model"] else f"{r['member']} ({r['model']})"


def tables(report: dict[str, Any]) -> str:
    """Every section's table; a section not reached (a run stopped early) has none."""
    env = report["env"]
    where = env.get("gpu") or f"CPU ({env['cpu_count']} cores, {env['torch_threads']} threads)"
    sections = ", ".join(f"{k} {v:.0f}" for k, v in report.get("sections_s", {}).items())
    lines = [
        f"## GPU check: {where}, torch {env['torch']} (CUDA {env['torch_cuda']}), "
        f"amp {env['amp']}, params {report['preset'] or 'params.yaml'}"
        f"{', quick' if report['quick'] else ''}; wall {report.get('wall_s', 0):.0f} s "
        f"({sections})",
    ]
    if st := report.get("store"):
        lines.append(
            f"store: {st['source']}, {st['classes']} classes, {st['train']:,} train drawings, "
            f"{st['points_mean']:.0f} points per drawing (real data: {REAL_POINTS_MEAN:.0f}); "
            f"train-step heads of {MODEL_CLASSES} classes"
        )
    for columns, key in TABLES:
        rows = report.get(key)
        if rows:
            lines += _table(columns, rows if isinstance(rows, list) else [rows])
    return "\n".join(lines)


def _util(r: dict[str, Any]) -> str:
    if r.get("gpu_util_mean") is None:
        return "-"
    active = f"{r['gpu_util_active_mean']:.0f}%, p10 {r['gpu_util_active_p10']:.0f}%"
    return f"{r['gpu_util_mean']:.0f}% ({active})"


STEP_COLUMNS: list[Column] = [
    ("member", _member),
    ("path", lambda r: r["path"]),
    ("batch", lambda r: str(r["batch"])),
    ("compile", lambda r: "on" if r["compile"] else "off"),
    ("samples/s", lambda r: _num(r["samples_per_s"])),
    ("step ms", lambda r: _num(r["step_ms"], ",.1f")),
    ("peak mem", lambda r: _mib(r["peak_mem_mib"])),
    ("note", lambda r: r["note"]),
]
INPUT_COLUMNS: list[Column] = [
    ("input pipeline", _input),
    ("workers", lambda r: str(r["workers"])),
    ("batch", lambda r: str(r["batch"])),
    ("drawings/s", lambda r: _num(r["drawings_per_s"])),
    ("within epochs", lambda r: _num(r["in_epoch_per_s"])),
    ("first batch s", lambda r: _num(r["first_batch_s"], ".2f")),
    ("note", lambda r: r["note"]),
]
LOOP_COLUMNS: list[Column] = [
    ("training loop", _member),
    ("batch", lambda r: str(r["batch"])),
    ("workers", lambda r: str(r["workers"])),
    ("steps", lambda r: _num(r["steps"])),
    ("time s", lambda r: _num(r["time_s"], ".1f")),
    ("samples/s", lambda r: _num(r["samples_per_s"])),
    ("val share", lambda r: _pct(r["val_share"])),
    ("peak mem", lambda r: _mib(r["peak_mem_mib"])),
    ("GPU util (active)", _util),
    ("note", lambda r: r["note"]),
]
DDP_COLUMNS: list[Column] = [
    ("DDP", lambda r: r["member"]),
    ("processes", lambda r: str(r["processes"])),
    ("backend", lambda r: r["backend"]),
    ("steps", lambda r: _num(r.get("steps"))),
    ("time s", lambda r: _num(r.get("time_s"), ".1f")),
    ("samples/s", lambda r: _num(r.get("samples_per_s"))),
    ("status", lambda r: r["status"]),
]
STAGE_COLUMNS: list[Column] = [
    ("train stage", _member),
    ("budget s", lambda r: _num(r["budget_s"])),
    ("batch", lambda r: str(r["batch"])),
    ("workers", lambda r: str(r["workers"])),
    ("steps", lambda r: _num(r.get("steps"))),
    ("samples/s", lambda r: _num(r.get("samples_per_s"))),
    ("val share", lambda r: _pct(r.get("val_share"))),
    ("torch peak", lambda r: _mib(r.get("peak_mem_mib"))),
    ("GPU mem max", lambda r: _mib(r.get("gpu_mem_max_mib"))),
    ("GPU util (active, p10)", _util),
    ("host RSS", lambda r: _mib(r.get("max_rss_mib"))),
    ("wall s", lambda r: _num(r.get("wall_s"))),
    ("status", lambda r: r["status"]),
]
TABLES = [
    (STEP_COLUMNS, "train_step"),
    (INPUT_COLUMNS, "input_pipeline"),
    (LOOP_COLUMNS, "loop"),
    (DDP_COLUMNS, "ddp"),
    (STAGE_COLUMNS, "stage"),
]
