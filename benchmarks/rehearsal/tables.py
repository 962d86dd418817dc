"""The rehearsal's Markdown tables: per scale (steps, the input pipeline, bytes on disk), the
scaling between the smallest and the largest scale, and the projections."""

from __future__ import annotations

from typing import Any

from benchmarks.rehearsal.competition import KAGGLE_TEST, KAGGLE_TRAIN
from benchmarks.rehearsal.disk import PARTS
from benchmarks.rehearsal.project import PROJECTED_CORES

EXPECTED = {
    "generate": "linear",
    "download": "linear (checks and links every file)",
    "preprocess": "linear",
    "input pipeline": "flat: fixed time per setting",
    "blend": "flat: 17,000 blend drawings",
    "evaluate": "flat: 17,000 val drawings",
    "predict": "flat: the test rows",
    "submit --dry-run": "flat: the test rows",
}


def scaling_table(results: list[dict[str, Any]]) -> list[str]:
    small, big = results[0], results[-1]
    ratio = big["drawings"] / small["drawings"]
    lines = [
        f"| step | expected | wall s at {small['drawings']:,} | wall s at {big['drawings']:,} "
        f"| (wall ratio) / (drawings ratio {ratio:.1f}) | peak PSS MB at {small['drawings']:,} "
        f"| at {big['drawings']:,} | memory ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in small["steps"].items():
        b = big["steps"][name]
        expected = EXPECTED.get(name, "flat: fixed time budget (--train-s)")
        own = f" (own s: {b['own_s'] / a['own_s'] / ratio:.2f})" if a.get("own_s") else ""
        lines.append(
            f"| {name} | {expected} | {a['wall_s']:,.1f} | {b['wall_s']:,.1f} "
            f"| {b['wall_s'] / a['wall_s'] / ratio:.2f}{own} | {a['peak_pss_mb']:,.0f} "
            f"| {b['peak_pss_mb']:,.0f} | {b['peak_pss_mb'] / a['peak_pss_mb']:.2f} |"
        )
    return lines


def _note(name: str, step: dict[str, Any]) -> str:
    """What a step did, in a few figures."""
    if name == "generate":
        return (
            f"{step['train_bytes'] / 1e6:,.0f} MB of train CSV, {step['mb_per_s']:,.1f} MB/s "
            f"({step['mb_per_s_per_process']:,.1f} per process x {step['processes']}), "
            f"classes of {step['class_count_min']:,} to {step['class_count_max']:,}"
        )
    if name == "download":
        d = step["metrics"]
        return f"{d['train/files']:,} files, {d['train/rows']:,} train rows checked and linked"
    if name == "preprocess":
        p = step["metrics"]
        return (
            f"pass 1 {p['pass1_s']:.1f} s, {p['csv_mb_per_s']:,.1f} MB/s of CSV, "
            f"{p['train/drawings']:,} train / {p['val/drawings']:,} val / "
            f"{p['blend/drawings']:,} blend / {p['test/rows']:,} test, "
            f"{p['bytes_per_drawing']:.0f} B/drawing, {p['rejected_rows']:,} rejected"
        )
    if name == "input pipeline":
        return "drawings/s in the input pipeline table"
    if name.startswith("train@"):
        t = step["metrics"]
        return (
            f"{t['steps']:,} steps, {t['train/samples_per_s']:,.0f} samples/s, "
            f"val MAP@3 {t['val/map3']:.4f}"
        )
    if name == "blend":
        return (
            f"{step['metrics']['blend/drawings']:,} drawings, fit MAP@3 "
            f"{step['metrics'].get('blend/fit/map3', float('nan')):.4f}"
        )
    if name == "evaluate":
        e = step["metrics"]
        return f"val MAP@3 {e['val/map3']:.4f}, {e['drawings_per_s']:,.0f} drawings/s"
    if name == "predict":
        p = step["metrics"]
        return (
            f"{p['test/rows']:,} rows, test MAP@3 {p.get('test/map3', float('nan')):.4f}, "
            f"{p['drawings_per_s']:,.0f} drawings/s"
        )
    if name == "submit --dry-run":
        return step["check"]
    return ""


def scale_table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"| step ({result['drawings']:,} drawings; {result['wall_s'] / 60:,.1f} min in all) "
        "| wall s | own s | peak PSS MB (tree) "
        "| peak RSS MB (largest process) | figures |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in result["steps"].items():
        own = f"{s['own_s']:,.1f}" if "own_s" in s else ""
        lines.append(
            f"| {name} | {s['wall_s']:,.1f} | {own} | {s['peak_pss_mb']:,.0f} "
            f"| {s['max_rss_mb']:,.0f} | {_note(name, s)} |"
        )
    return lines


def loader_table(result: dict[str, Any]) -> list[str]:
    """The input pipeline alone: drawings/s with 0 and 2 DataLoader workers."""
    lines = [
        f"| input pipeline ({result['drawings']:,} drawings) | encoder | batch "
        "| 0 workers, drawings/s | 2 workers, drawings/s | first batch s (0 / 2 workers) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rates = result["steps"]["input pipeline"]["rates"]
    for r in rates.values():
        if r["workers"] != 0:
            continue
        two = rates.get(f"{r['member']}/batch{r['batch_size']}/workers2", {})
        size = f" {r['image_size']} px" if r["encoder"] == "image" else ""
        lines.append(
            f"| {r['member']} | {r['encoder']}{size} | {r['batch_size']} "
            f"| {r['drawings_per_s']:,.0f} | {two.get('drawings_per_s', float('nan')):,.0f} "
            f"| {r['first_batch_s']:.2f} / {two.get('first_batch_s', float('nan')):.2f} |"
        )
    return lines


def projection_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| {KAGGLE_TRAIN:,} train drawings, {KAGGLE_TEST:,} test rows, "
        f"{PROJECTED_CORES} cores + 1 GPU | value | basis | figures |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r['item']} | {r['value']} | {r['basis']} | **{r['figures']}** |" for r in rows]
    return lines


PART_NAMES = {
    "raw train CSV": "raw train CSV (data/raw/train_simplified)",
    "raw test CSV": "raw test CSV and solution (data/raw)",
    "store": "store (data/processed)",
    "models": "models (models/)",
    "submission": "submission (submissions/)",
    "dvc cache": "DVC cache (.dvc/cache: bytes no output holds)",
    "checkpoints": "checkpoints (checkpoints/: resume state)",
    "other": "other (metrics, reports, params, DVC's own files)",
}


def disk_table(result: dict[str, Any]) -> list[str]:
    """Bytes on disk per part after the stages, then per cache type after `dvc add` (what
    `dvc repro` leaves) and after `dvc checkout --relink`."""
    disk = result["disk"]
    steps = [
        (f"{what}, {name}", figures)
        for name, added in disk["types"].items()
        for what, figures in (("`dvc add`", added), ("then `checkout --relink`", added["relinked"]))
    ]
    columns = [disk["stages"], *(f["parts"] for _, f in steps)]
    lines = [
        f"| MB on disk ({result['drawings']:,} drawings, measured) | after the stages "
        + "".join(f"| {label} " for label, _ in steps)
        + "|",
        "| --- " * (2 + len(steps)) + "|",
    ]
    for part, _ in PARTS:
        lines.append(
            f"| {PART_NAMES[part]} " + "".join(f"| {c[part] / 1e6:,.1f} " for c in columns) + "|"
        )
    raw = [c["raw train CSV"] + c["raw test CSV"] for c in columns]
    lines += [
        "| **total** " + "".join(f"| **{c['total'] / 1e6:,.1f}** " for c in columns) + "|",
        "| total / raw CSV "
        + "".join(f"| {c['total'] / r:.2f} " for c, r in zip(columns, raw, strict=True))
        + "|",
        "| the step: wall s, peak RSS MB | "
        + "".join(f"| {f['wall_s']:,.1f} s, {f['max_rss_mb']:,.0f} MB " for _, f in steps)
        + "|",
        "| the file system's used bytes grew during the step (df, MB) | "
        + "".join(f"| {f['fs_used_grew'] / 1e6:,.1f} " for _, f in steps)
        + "|",
    ]
    peak = disk["preprocess_peak"]
    lines += [
        "",
        f"Preprocess's peak beside data/raw (temporary runs and the new store): "
        f"{peak['bytes'] / 1e6:,.1f} MB, sampled {peak['samples']} times "
        f"(a walk took {peak['mean_walk_s']:.3f} s); it leaves "
        f"{disk['stages']['store'] / 1e6:,.1f} MB.",
    ]
    return lines


def disk_projection_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| {KAGGLE_TRAIN:,} train drawings, {KAGGLE_TEST:,} test rows: bytes on disk "
        "| value | basis | figures |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r['item']} | {r['value']} | {r['basis']} | **{r['figures']}** |" for r in rows]
    return lines
