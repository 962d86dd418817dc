"""Preprocess at scale: our stage against the first seed's naive reader, on the same drawings.

    python -m benchmarks.bench_preprocess          # or: make bench
    BENCH_ROWS=2000000 python -m benchmarks.bench_preprocess

Input: `../shared/quickdraw/kaggle16` replicated to >= 1,000,000 train rows (100 copies), each copy
with its own key_ids (copy * 10**16 + key_id), plus the 1,600 test rows; generated once and cached
under `benchmarks/results/` (git-ignored). Figures per run: wall seconds, drawings/s, MB/s of CSV,
peak RSS (summed over the process tree, sampled from /proc every 50 ms), bytes stored per drawing.

Naive baseline (the first seed's way): csv rows -> json.loads -> a padded (30, 50, 2) int16 array
per drawing -> zarr append in chunks of 512. It is slow, so it runs on a 100,000-row cut of the same
input (10 copies) and its time is scaled by the row ratio; the table says so. Each side runs in its
own subprocess, so neither inherits the other's memory.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.conftest import REPO_DIR, SHARED_QUICKDRAW

KAGGLE16_DIR = SHARED_QUICKDRAW / "kaggle16"
RESULTS_DIR = Path(__file__).parent / "results"
COPIES = int(os.environ.get("BENCH_ROWS", "1000000")) // 10_000
BASELINE_COPIES = 10  # 100,000 rows


def build_input(copies: int, out_dir: Path) -> Path:
    """kaggle16 in Kaggle layout with every train row repeated `copies` times (unique key_ids)."""
    done = out_dir / ".complete"
    if done.is_file():
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "train_simplified").mkdir(parents=True)
    for src in sorted((KAGGLE16_DIR / "train_simplified").glob("*.csv")):
        with open(src, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = list(reader)
        key = header.index("key_id")
        with open(out_dir / "train_simplified" / src.name, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for copy in range(copies):
                for row in rows:
                    row = list(row)
                    row[key] = str(copy * 10**16 + int(row[key]))
                    writer.writerow(row)
    for name in ("test_simplified.csv", "test_solution.csv"):
        shutil.copy(KAGGLE16_DIR / name, out_dir / name)
    done.touch()
    return out_dir


# The two contenders, each run as `python -c` in a fresh process; they print one JSON line.
OURS = """
import json, sys, dataclasses
from pathlib import Path
from pipeline.config import PreprocessConfig, load_section
cfg = load_section("preprocess", PreprocessConfig, Path(sys.argv[3]))
from pipeline.preprocess import run
m = run(cfg, Path(sys.argv[1]), Path(sys.argv[2]) / "processed",
        Path(sys.argv[2]) / "preprocess.json", progress=False)
print(json.dumps({"drawings": m["train/rows_read"] + m["test/rows"],
                  "stored": m["train/drawings"] + m["val/drawings"] + m["test/rows"],
                  "store_bytes": m["store_bytes"], "pass1_s": m["pass1_s"]}))
"""

NAIVE = """
import csv, json, sys
from pathlib import Path
import numpy as np, zarr
raw, out = Path(sys.argv[1]), Path(sys.argv[2]) / "naive.zarr"
root = zarr.open_group(str(out), mode="w")
x = root.create_array("x", shape=(0, 30, 50, 2), chunks=(512, 30, 50, 2), dtype=np.int16)
y = root.create_array("y", shape=(0,), chunks=(512,), dtype=np.int16)
buf, labels, n = [], [], 0
def flush():
    x.append(np.stack(buf)); y.append(np.asarray(labels, np.int16)); buf.clear(); labels.clear()
files = sorted((raw / "train_simplified").glob("*.csv"))
for label, f in enumerate(files):
    for row in csv.DictReader(open(f, newline="")):
        strokes = json.loads(row["drawing"])
        a = np.zeros((30, 50, 2), np.int16)
        for s, (xs, ys) in enumerate(strokes[:30]):
            a[s, :len(xs[:50]), 0] = xs[:50]
            a[s, :len(ys[:50]), 1] = ys[:50]
        buf.append(a); labels.append(label); n += 1
        if len(buf) == 512:
            flush()
for row in csv.DictReader(open(raw / "test_simplified.csv", newline="")):
    strokes = json.loads(row["drawing"])
    a = np.zeros((30, 50, 2), np.int16)
    for s, (xs, ys) in enumerate(strokes[:30]):
        a[s, :len(xs[:50]), 0] = xs[:50]
        a[s, :len(ys[:50]), 1] = ys[:50]
    buf.append(a); labels.append(-1); n += 1
    if len(buf) == 512:
        flush()
if buf:
    flush()
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(json.dumps({"drawings": n, "stored": n, "store_bytes": size}))
"""


def _tree_rss_kib(pid: int) -> int:
    """Resident KiB of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure(code: str, args: list[str]) -> dict[str, float]:
    """Run `code` in a fresh interpreter; wall time, its JSON line, peak tree RSS."""
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_DIR,
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{err[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures.update(wall_s=wall, peak_rss_mb=peak[0] / 1024)
    return figures


def _csv_mb(raw_dir: Path) -> float:
    files = [*sorted((raw_dir / "train_simplified").glob("*.csv")), raw_dir / "test_simplified.csv"]
    return sum(f.stat().st_size for f in files) / 1e6


def run() -> dict[str, float]:
    RESULTS_DIR.mkdir(exist_ok=True)
    big = build_input(COPIES, RESULTS_DIR / f"input-kaggle16x{COPIES}")
    small = build_input(BASELINE_COPIES, RESULTS_DIR / f"input-kaggle16x{BASELINE_COPIES}")
    params = REPO_DIR / "configs" / "params.yaml"
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        ours = measure(OURS, [str(big), tmp, str(params)])
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp:
        naive = measure(NAIVE, [str(small), tmp])
    # Replicas compress against each other; bytes/drawing on the 11,600 unique drawings too.
    unique = {}
    for name, code, args in (("ours", OURS, [str(params)]), ("naive", NAIVE, [])):
        with tempfile.TemporaryDirectory(prefix="bench-unique-") as tmp:
            r = measure(code, [str(KAGGLE16_DIR), tmp, *args])
        unique[name] = r["store_bytes"] / r["stored"]
    scale = ours["drawings"] / naive["drawings"]
    rows = {
        "ours": {**ours, "csv_mb": _csv_mb(big), "scaled_wall_s": ours["wall_s"]},
        "naive": {**naive, "csv_mb": _csv_mb(small), "scaled_wall_s": naive["wall_s"] * scale},
    }
    print(
        f"input: {ours['drawings']:,} drawings ({_csv_mb(big):,.0f} MB of CSV) from kaggle16 x "
        f"{COPIES}; naive run on {naive['drawings']:,} of them, time scaled x{scale:.1f}; "
        f"{os.cpu_count()} cores (shared: figures are noisy)"
    )
    columns = (
        ("wall s", 10),
        ("drawings/s", 12),
        ("MB/s", 8),
        ("peak RSS MB", 13),
        ("B/drawing", 11),
    )
    print(" " * 8 + "".join(f"{name:>{width}s}" for name, width in columns))
    for name, r in rows.items():
        print(
            f"{name:8s}{r['scaled_wall_s']:10.1f}{r['drawings'] / r['wall_s']:12,.0f}"
            f"{r['csv_mb'] / r['wall_s']:8.1f}{r['peak_rss_mb']:13.0f}"
            f"{r['store_bytes'] / r['stored']:11.1f}"
        )
    speedup = rows["naive"]["scaled_wall_s"] / rows["ours"]["scaled_wall_s"]
    size_ratio = (ours["store_bytes"] / ours["stored"]) / (naive["store_bytes"] / naive["stored"])
    full_s = 49_707_579 / (ours["drawings"] / ours["wall_s"])
    print(
        f"ours: pass 1 (parallel parse) {ours['pass1_s']:.1f} s, rest (serial merge, test) "
        f"{ours['wall_s'] - ours['pass1_s']:.1f} s. Unique drawings only: ours "
        f"{unique['ours']:.1f} B/drawing, naive {unique['naive']:.1f} "
        f"({unique['ours'] / unique['naive']:.2f})"
    )
    print(
        f"speed-up {speedup:.1f}x (target >= 10x); bytes/drawing {size_ratio:.2f} of naive "
        f"(target <= 0.5); projected full Kaggle run (49.7M drawings): {full_s / 60:.1f} min "
        f"on this machine, {49_707_579 * ours['store_bytes'] / ours['stored'] / 1e9:.1f} GB"
    )
    return {
        "rows": ours["drawings"],
        "ours_wall_s": round(ours["wall_s"], 2),
        "ours_pass1_s": round(ours["pass1_s"], 2),
        "ours_drawings_per_s": round(ours["drawings"] / ours["wall_s"]),
        "ours_csv_mb_per_s": round(rows["ours"]["csv_mb"] / ours["wall_s"], 1),
        "ours_peak_rss_mb": round(ours["peak_rss_mb"]),
        "ours_bytes_per_drawing": round(ours["store_bytes"] / ours["stored"], 1),
        "naive_rows": naive["drawings"],
        "naive_wall_s_scaled": round(rows["naive"]["scaled_wall_s"], 1),
        "naive_drawings_per_s": round(naive["drawings"] / naive["wall_s"]),
        "naive_csv_mb_per_s": round(rows["naive"]["csv_mb"] / naive["wall_s"], 1),
        "naive_peak_rss_mb": round(naive["peak_rss_mb"]),
        "naive_bytes_per_drawing": round(naive["store_bytes"] / naive["stored"], 1),
        "speedup": round(speedup, 1),
        "bytes_ratio": round(size_ratio, 3),
        "ours_bytes_per_drawing_unique": round(unique["ours"], 1),
        "naive_bytes_per_drawing_unique": round(unique["naive"], 1),
        "projected_full_min": round(full_s / 60, 1),
    }


if __name__ == "__main__":
    run()
