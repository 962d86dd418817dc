"""Preprocess at scale: our stage against the first seed's naive reader, on the same drawings.

    python -m benchmarks.bench_preprocess          # or: make bench
    BENCH_ROWS=2000000 python -m benchmarks.bench_preprocess

Input: `../shared/quickdraw/kaggle16` replicated to >= 1,000,000 train rows (100 copies), each copy
with its own key_ids (copy * 10**16 + key_id), plus the 1,600 test rows; generated once and cached
under `benchmarks/results/` (git-ignored). Figures per run: wall seconds, drawings/s, MB/s of CSV,
peak memory (PSS summed over the process tree, sampled from /proc every 50 ms), bytes stored per
drawing. Each contender runs 3 times (`BENCH_REPEATS`); the median run is shown.

Naive baseline (the first seed's way), on the same files: csv rows -> json.loads -> a padded
(30, 50, 2) int16 array per drawing -> zarr append in chunks of 512 (zarr's default zstd). Each
side runs in its own subprocess, so neither inherits the other's memory. Both are also run on the
11,600 unique kaggle16 drawings, because replicas sitting in one chunk compress against each other
(the naive store keeps file order, where a class's copies are 250 rows apart).
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

from benchmarks.kaggle16 import REPO_DIR, SHARED_QUICKDRAW
from benchmarks.procmem import tree_pss_kib

KAGGLE16_DIR = SHARED_QUICKDRAW / "kaggle16"
RESULTS_DIR = Path(__file__).parent / "results"
COPIES = int(os.environ.get("BENCH_ROWS", "1000000")) // 10_000
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))  # runs per contender; the median is shown
KAGGLE_DRAWINGS = 49_707_579 + 112_199  # the competition: train_simplified plus test


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
from pipeline.common.config import PreprocessConfig, load_section
cfg = load_section("preprocess", PreprocessConfig, Path(sys.argv[3]))
from pipeline.common.paths import Paths
from pipeline.preprocess import run
paths = dataclasses.replace(Paths.under(Path(sys.argv[2])), raw_dir=Path(sys.argv[1]))
m = run(cfg, paths, show_progress=False)
print(json.dumps({"drawings": m["train/rows_read"] + m["test/rows"],
                  "stored": m["train/drawings"] + m["val/drawings"] + m.get("blend/drawings", 0)
                            + m["test/rows"],
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


def measure(code: str, args: list[str]) -> dict[str, float]:
    """Run `code` in a fresh interpreter; wall time, its JSON line, peak tree PSS."""
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
            peak[0] = max(peak[0], tree_pss_kib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{err[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures.update(wall_s=wall, peak_mb=peak[0] / 1024)
    return figures


def measure_median(code: str, args: list[str], repeats: int) -> dict[str, float]:
    """`measure` `repeats` times, each in a fresh temp folder; the run of median wall time."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
            runs.append(measure(code, [args[0], tmp, *args[1:]]))
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def _csv_mb(raw_dir: Path) -> float:
    files = [*sorted((raw_dir / "train_simplified").glob("*.csv")), raw_dir / "test_simplified.csv"]
    return sum(f.stat().st_size for f in files) / 1e6


def run() -> dict[str, float]:
    RESULTS_DIR.mkdir(exist_ok=True)
    big = build_input(COPIES, RESULTS_DIR / f"input-kaggle16x{COPIES}")
    params = REPO_DIR / "params.yaml"
    contenders = {"ours": (OURS, [str(params)]), "naive": (NAIVE, [])}
    rows, unique = {}, {}
    for name, (code, extra) in contenders.items():
        rows[name] = measure_median(code, [str(big), *extra], REPEATS)
        r = measure_median(code, [str(KAGGLE16_DIR), *extra], 1)
        unique[name] = r["store_bytes"] / r["stored"]
    csv_mb = _csv_mb(big)
    print(
        f"input: {rows['ours']['drawings']:,} drawings ({csv_mb:,.0f} MB of CSV), kaggle16 x "
        f"{COPIES} with unique key_ids; {os.cpu_count()} cores; median of {REPEATS} runs each"
    )
    header = ("wall s", "drawings/s", "MB/s", "peak MB", "B/drawing", "B/drawing unique")
    print(f"{'':8s}" + "".join(f"{h:>13s}" for h in header[:5]) + f"{header[5]:>18s}")
    for name, r in rows.items():
        print(
            f"{name:8s}{r['wall_s']:13.1f}{r['drawings'] / r['wall_s']:13,.0f}"
            f"{csv_mb / r['wall_s']:13.1f}{r['peak_mb']:13.0f}"
            f"{r['store_bytes'] / r['stored']:13.1f}{unique[name]:18.1f}"
        )
    ours, naive = rows["ours"], rows["naive"]
    speedup = naive["wall_s"] / ours["wall_s"]
    bytes_ratio = unique["ours"] / unique["naive"]
    full_s = KAGGLE_DRAWINGS / (ours["drawings"] / ours["wall_s"])
    print(
        f"ours: pass 1 (parallel parse) {ours['pass1_s']:.1f} s, the rest (merge, test) "
        f"{ours['wall_s'] - ours['pass1_s']:.1f} s\n"
        f"speed-up {speedup:.1f}x (target >= 10x); bytes/drawing {bytes_ratio:.2f} of naive on "
        f"unique drawings (target <= 0.5)\n"
        f"projected full Kaggle run ({KAGGLE_DRAWINGS / 1e6:.1f}M drawings) on this machine: "
        f"{full_s / 60:.1f} min, {KAGGLE_DRAWINGS * unique['ours'] / 1e9:.1f} GB"
    )
    return {
        "rows": ours["drawings"],
        "csv_mb": round(csv_mb, 1),
        **{
            f"{name}_{key}": value
            for name, r in rows.items()
            for key, value in {
                "wall_s": round(r["wall_s"], 2),
                "drawings_per_s": round(r["drawings"] / r["wall_s"]),
                "csv_mb_per_s": round(csv_mb / r["wall_s"], 1),
                "peak_pss_mb": round(r["peak_mb"]),
                "bytes_per_drawing": round(r["store_bytes"] / r["stored"], 1),
                "bytes_per_drawing_unique": round(unique[name], 1),
            }.items()
        },
        "ours_pass1_s": round(ours["pass1_s"], 2),
        "speedup": round(speedup, 1),
        "bytes_ratio_unique": round(bytes_ratio, 3),
        "projected_full_min": round(full_s / 60, 1),
        "projected_full_gb": round(KAGGLE_DRAWINGS * unique["ours"] / 1e9, 2),
    }


if __name__ == "__main__":
    run()
