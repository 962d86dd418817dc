"""A full-scale rehearsal on this machine: competition-sized data made from real drawings, every
stage run on it, wall time and peak memory per stage, and a projection to the real competition.

    python -m benchmarks.rehearsal                      # 5,000,000 drawings; scales 0.2 and 1.0
    python -m benchmarks.rehearsal --drawings 30000 --test-rows 2000 --train-s 5 --scales 0.5,1.0

1. **Data** (`generate`), in Kaggle's layout under `--work` (default /tmp/quickdraw-rehearsal):
   `train_simplified/<word>.csv` (countrycode,drawing,key_id,recognized,timestamp,word) for the
   competition's 340 classes, `test_simplified.csv` (key_id,countrycode,drawing; `--test-rows`,
   balanced over the classes, shuffled) and `test_solution.csv` (key_id,word with `_`).
   The 340 classes are the 345 of `../shared/quickdraw/ndjson345` less the five the Kaggle
   competition did not have: aircraft carrier, knife, lighter, rifle, syringe (`NOT_IN_KAGGLE`;
   the list of a published competition solution, ngxbac's CLASS_NAME, compared with the 345).
   Per-class counts are imbalanced: weights drawn uniformly from [0.3, 2.0] (seeded), scaled so
   the counts sum to `--drawings`. Every row is a jittered copy of a real drawing of its class
   (ndjson345, plus kaggle16's train files where the class is there: about 25 to 2,500 source
   drawings per class): a per-row scale of 0.9-1.1 per axis about the canvas centre, a shift of
   up to 8 px, +-2 px per point, rounded and clipped to 0-255, strokes kept; country and
   `recognized` are the source's, the timestamp random in early 2017, and key_ids fresh and
   unique (16 digits). A fifth of each class's sources (at least one) is kept for the test rows,
   so test drawings are copies of drawings no training row copies; val and blend rows do share
   sources with train rows, so val figures are optimistic.
   The CSV text is built by NumPy in chunks of `CHUNK_ROWS` rows with no Python per row or per
   point: every number with the separator after it is one 8-byte cell of a lookup table, and each
   row's other fields are cells too; the row's cells are gathered in file order and the unused
   bytes of each cell masked out in one step. One class file per task, `--gen-processes` at once.
2. **The stages** run as `python -m pipeline.<stage>` subprocesses in `<work>/s<N>/run`, which holds
   a `params.yaml` made from the repo's with: download.source local (the generated folder),
   preprocess.val_per_class and blend_per_class 50 (17,000 drawings each), train.time_budget_s
   = `--train-s`, validation only at the end of each member's run, ensemble.members =
   `--members` (default: params.yaml's), ensemble.method = `--blend-method` if given. Also the
   input pipeline alone (`TrainBatches` + `make_loader`, 0 and 2 DataLoader workers, at the
   member's batch_size and at 512, for gru's points encoder, cnn's image encoder and every
   member's), and the submission checked by `python -m pipeline.submit --dry-run` (offline).
   `--threads N` sets OMP/MKL/OpenBLAS threads for every step (default: the stages' own; torch
   then uses every core in blend, evaluate and predict, which on a busy 2-core box was 3-5x
   slower than one thread).
3. **Per stage**: wall seconds of the subprocess; peak memory two ways: the sum of PSS over the
   process tree (pool and DataLoader workers included; sampled every 0.25 s from /proc: the
   memory the stage really holds) and the largest single process's peak RSS (exact: GNU time's
   %M, the kernel's max over the step's process and its waited-for children, not a sum; the
   step runs under /usr/bin/time, since a process started straight from this one would start
   its high-water mark at this one's RSS).
   `--scales 0.2,1.0` runs everything at those fractions of `--drawings` and prints the ratios:
   (time ratio) / (drawings ratio) near 1 is linear. Training has a fixed budget, and blend,
   evaluate and predict work on fixed-size splits (17,000 blend, 17,000 val, `--test-rows` test
   drawings), so those are flat by design.
4. **Projection** to the competition (49,707,579 train drawings, 112,199 test rows, 340
   classes) on a 16-core, one-GPU machine: preprocess pass 1 from the measured CSV MB/s per
   worker x 16, pass 2 from its measured serial drawings/s; hours per epoch per member from
   `--gpu-samples-per-s` (default: placeholders, stated, not measured), against the input
   pipeline at batch 512 with 15 DataLoader workers, from 15 x half the measured 2-worker rate
   (low: transfers and contention included) to 15 x the in-process rate (high); an epoch takes
   the slower of the GPU and the low figure. Blend, evaluate and predict are measured at the
   competition's sizes (17,000, 17,000 and 112,199 drawings) on this machine's CPU.
5. Markdown tables on stdout; every figure in `--out` (default benchmarks/results/rehearsal.json).

Disk: about 1.1 x the CSV (about 500 bytes per drawing) plus twice the store (about 100 bytes per
drawing) for the largest scale, checked before anything is written; each scale's folder is
removed once measured unless `--keep` (the stage logs stay in `<work>/logs/`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.bench_preprocess import _tree_pss_kib
from benchmarks.kaggle16 import KAGGLE16_DIR, REPO_DIR, SHARED_QUICKDRAW
from pipeline.common.cli import user_errors
from pipeline.common.errors import PipelineError
from pipeline.common.progress import progress
from pipeline.core.layout import (
    SOLUTION_FILE,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    label_token,
)

log = logging.getLogger("benchmarks.rehearsal")

NDJSON345_DIR = SHARED_QUICKDRAW / "ndjson345"
RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_WORK = Path("/tmp/quickdraw-rehearsal")

# The competition (Kaggle's quickdraw-doodle-recognition).
KAGGLE_TRAIN = 49_707_579
KAGGLE_TEST = 112_199
KAGGLE_CLASSES = 340
NOT_IN_KAGGLE = ("aircraft carrier", "knife", "lighter", "rifle", "syringe")
# Placeholders until measured on a GPU: stated, not measured (--gpu-samples-per-s replaces them).
STATED_GPU_RATES = {"gru": 20_000.0, "bilstm": 20_000.0, "cnn": 8_000.0}
PROJECTED_CORES = 16
PROJECTED_LOADER_WORKERS = 15  # DataLoader workers beside the training process on 16 cores
GPU_BATCH = 512  # the input pipeline is also measured at this batch size (a GPU-sized batch)

VAL_PER_CLASS = 50
BLEND_PER_CLASS = 50

# Generation.
CHUNK_ROWS = 16_384
CELL = 8  # bytes per token cell: 3 digits + "]], " is the longest number token
SCALE_RANGE = (0.9, 1.1)
SHIFT_PX = 8.0
JITTER_PX = 2
COUNT_WEIGHTS = (0.3, 2.0)  # per-class count / mean count, drawn uniformly
KEY_BASE = 5 * 10**15  # key_id = KEY_BASE + (row * KEY_MULT) mod 10**15: unique, 16 digits
KEY_MULT = 2_654_435_761  # odd, not a multiple of 5: a bijection mod 10**15
TIME_START = np.datetime64("2017-01-01T00:00:00", "us")
TIME_SPAN_US = 90 * 86_400 * 10**6

# Number tokens: value v (0-255) with separator s after it; id = v * 4 + s.
SEPARATORS = (b", ", b"], [", b"]]", b"]], ")  # in a list; x list's end; last stroke; stroke end
SEP_NEXT, SEP_X_END, SEP_LAST, SEP_STROKE_END = range(4)
STROKE_OPEN = 1024  # token "[[": a stroke's start
EMPTY = 1025  # a cell filled later (row fields)


def _token_table() -> tuple[np.ndarray, np.ndarray]:
    texts = [str(v).encode() + sep for v in range(256) for sep in SEPARATORS] + [b"[[", b""]
    cells = np.zeros((len(texts), CELL), np.uint8)
    for i, text in enumerate(texts):
        cells[i, : len(text)] = np.frombuffer(text, np.uint8)
    return cells, np.array([len(t) for t in texts], np.uint8)


TOKEN_CELLS, TOKEN_LENGTHS = _token_table()
# 8-byte cells and their masks as one uint64 each: one gather moves a whole cell
TOKEN_WORDS = TOKEN_CELLS.view(np.uint64).ravel()
MASK_WORDS = (np.arange(CELL) < np.arange(CELL + 1)[:, None]).view(np.uint64).ravel()


# ---- the classes and the source drawings --------------------------------------------------------


def kaggle_classes() -> list[str]:
    """The competition's 340 words: ndjson345's file names less `NOT_IN_KAGGLE`, sorted."""
    words = sorted(p.stem for p in NDJSON345_DIR.glob("*.ndjson"))
    if not words:
        raise PipelineError(f"no {NDJSON345_DIR}/*.ndjson; set QUICKDRAW_SHARED to the real data")
    classes = [w for w in words if w not in NOT_IN_KAGGLE]
    if len(words) != 345 or len(classes) != KAGGLE_CLASSES:
        raise PipelineError(f"{NDJSON345_DIR} has {len(words)} classes; expected 345 of them")
    return classes


@dataclasses.dataclass
class Pool:
    """The source drawings, ragged, with each point's place in its drawing's token sequence.

    A drawing's stroke tokens are, per stroke, "[[" then its x tokens then its y tokens; a
    point's x token is at `x_tok` from the drawing's first stroke token, its y token at `y_tok`,
    and each token carries its separator (`x_sep`, `y_sep`).
    """

    x: np.ndarray  # (P,) uint8
    y: np.ndarray  # (P,) uint8
    x_tok: np.ndarray  # (P,) int32
    y_tok: np.ndarray  # (P,) int32
    x_sep: np.ndarray  # (P,) int16
    y_sep: np.ndarray  # (P,) int16
    open_tok: np.ndarray  # (S,) int32: each stroke's "[[" token
    point_offsets: np.ndarray  # (D+1,) int64
    stroke_offsets: np.ndarray  # (D+1,) int64
    n_tokens: np.ndarray  # (D,) int64: strokes + 2 x points
    country: np.ndarray  # (D, 2) uint8
    recognized: np.ndarray  # (D,) bool
    train_sources: list[np.ndarray]  # per class: drawing indices train rows copy
    test_sources: list[np.ndarray]  # per class: drawing indices test rows copy


def _read_sources(classes: list[str]) -> list[list[tuple[list, str, bool]]]:
    """Per class: (strokes, country, recognized) of every real drawing there is of it."""
    sources: list[list[tuple[list, str, bool]]] = []
    for word in classes:
        found = []
        with open(NDJSON345_DIR / f"{word}.ndjson", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                found.append((row["drawing"], row["countrycode"], bool(row["recognized"])))
        kaggle = KAGGLE16_DIR / TRAIN_DIR / f"{word}.csv"
        if kaggle.is_file():
            with open(kaggle, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    found.append(
                        (
                            json.loads(row["drawing"]),
                            row["countrycode"],
                            row["recognized"] == "True",
                        )
                    )
        sources.append(found)
    return sources


def load_pool(classes: list[str]) -> Pool:
    """Every source drawing of `classes`, checked (0-255, x and y of equal length, 2-letter
    countries), split a fifth for test rows and the rest for train rows, per class."""
    xs, ys, x_tok, y_tok, x_sep, y_sep, open_tok = [], [], [], [], [], [], []
    point_counts, stroke_counts, countries, recognized = [], [], [], []
    train_sources, test_sources = [], []
    d = 0
    for found in _read_sources(classes):
        ids = []
        for strokes, country, rec in found:
            strokes = [s for s in strokes if len(s) >= 2 and len(s[0]) == len(s[1]) and s[0]]
            coords = [v for s in strokes for v in (*s[0], *s[1])]
            if not strokes or min(coords) < 0 or max(coords) > 255:
                continue
            tok = 0
            for k, (sx, sy) in enumerate(strokes):
                n = len(sx)
                open_tok.append(tok)
                xs.extend(sx)
                ys.extend(sy)
                x_tok.extend(range(tok + 1, tok + 1 + n))
                y_tok.extend(range(tok + 1 + n, tok + 1 + 2 * n))
                x_sep.extend([SEP_NEXT] * (n - 1) + [SEP_X_END])
                end = SEP_LAST if k == len(strokes) - 1 else SEP_STROKE_END
                y_sep.extend([SEP_NEXT] * (n - 1) + [end])
                tok += 1 + 2 * n
            point_counts.append(sum(len(s[0]) for s in strokes))
            stroke_counts.append(len(strokes))
            code = (
                country if len(country) == 2 and country.isascii() and country.isalpha() else "US"
            )
            countries.append(code.encode())
            recognized.append(rec)
            ids.append(d)
            d += 1
        if not ids:
            raise PipelineError("a class has no usable source drawing")
        ids_arr = np.array(ids)
        is_test = np.zeros(len(ids), bool)
        is_test[::5] = True  # a fifth, at least one, for the test rows
        if len(ids) > 1:  # a class with one source drawing shares it
            train_sources.append(ids_arr[~is_test])
        else:
            train_sources.append(ids_arr)
        test_sources.append(ids_arr[is_test])
    return Pool(
        x=np.array(xs, np.uint8),
        y=np.array(ys, np.uint8),
        x_tok=np.array(x_tok, np.int32),
        y_tok=np.array(y_tok, np.int32),
        x_sep=np.array(x_sep, np.int16),
        y_sep=np.array(y_sep, np.int16),
        open_tok=np.array(open_tok, np.int32),
        point_offsets=np.concatenate([[0], np.cumsum(point_counts)]).astype(np.int64),
        stroke_offsets=np.concatenate([[0], np.cumsum(stroke_counts)]).astype(np.int64),
        n_tokens=np.array(stroke_counts, np.int64) + 2 * np.array(point_counts, np.int64),
        country=np.frombuffer(b"".join(countries), np.uint8).reshape(-1, 2),
        recognized=np.array(recognized, bool),
        train_sources=train_sources,
        test_sources=test_sources,
    )


# ---- CSV text, vectorised ----------------------------------------------------------------------


def _ragged_take(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element indices of items `which` of a ragged array, concatenated, and each one's row."""
    starts, counts = offsets[which], offsets[which + 1] - offsets[which]
    out_starts = np.cumsum(counts) - counts
    rows = np.repeat(np.arange(len(which)), counts)
    return np.arange(int(counts.sum())) + np.repeat(starts - out_starts, counts), rows


def _fields(parts: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row byte fields -> (R, K, CELL) cells and (R, K) lengths, in order.

    Each part is (R, w) bytes and each row's length (None: all w); it becomes ceil(w / CELL)
    cells, the last ones short or empty where the row's field is shorter.
    """
    cells, lengths = [], []
    for data, length in parts:
        rows, width = data.shape
        k = -(-width // CELL)
        padded = np.zeros((rows, k * CELL), np.uint8)
        padded[:, :width] = data
        cells.append(padded.reshape(rows, k, CELL))
        n = np.full(rows, width) if length is None else length
        lengths.append(np.clip(n[:, None] - CELL * np.arange(k), 0, CELL))
    return np.concatenate(cells, axis=1), np.concatenate(lengths, axis=1).astype(np.uint8)


def _const(text: bytes, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, np.uint8), (rows, len(text)))


def _digits(keys: np.ndarray) -> np.ndarray:
    """(R,) int64 of 16 digits -> (R, 16) ASCII."""
    powers = 10 ** np.arange(15, -1, -1, dtype=np.int64)
    return (keys[:, None] // powers % 10 + 48).astype(np.uint8)


def _timestamps(rng: np.random.Generator, rows: int) -> np.ndarray:
    """(R, 25) ASCII like Kaggle's `2017-03-23 12:59:36.68729`."""
    stamps = TIME_START + rng.integers(0, TIME_SPAN_US, rows).astype("timedelta64[us]")
    text = np.datetime_as_string(stamps, unit="us").astype("S26")
    out = np.frombuffer(text.tobytes(), np.uint8).reshape(rows, 26)[:, :25].copy()
    out[:, 10] = ord(" ")
    return out


def render_rows(
    pool: Pool,
    src: np.ndarray,
    rng: np.random.Generator,
    head: tuple[np.ndarray, np.ndarray],
    tail: tuple[np.ndarray, np.ndarray],
) -> bytes:
    """CSV text of one row per source drawing `src` (R,): head cells, a jittered copy of the
    drawing as `[[[x, ...], [y, ...]], ...]`, tail cells (head and tail from `_fields`)."""
    rows = len(src)
    head_cells, head_len = head
    tail_cells, tail_len = tail
    n_head, n_tail = head_len.shape[1], tail_len.shape[1]
    per_row = n_head + pool.n_tokens[src] + n_tail
    row_start = np.cumsum(per_row) - per_row
    ids = np.full(int(per_row.sum()), EMPTY, np.int16)

    points, prow = _ragged_take(pool.point_offsets, src)
    scale = rng.uniform(*SCALE_RANGE, (2, rows)).astype(np.float32)
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, (2, rows)).astype(np.float32)
    base = row_start[prow] + n_head
    for axis, (coord, tok, sep) in enumerate(
        ((pool.x, pool.x_tok, pool.x_sep), (pool.y, pool.y_tok, pool.y_sep))
    ):
        value = (coord[points].astype(np.float32) - 127.5) * scale[axis, prow] + 127.5
        value += shift[axis, prow] + rng.integers(-JITTER_PX, JITTER_PX + 1, len(points))
        value = np.clip(np.rint(value), 0, 255).astype(np.int16)
        ids[base + tok[points]] = value * 4 + sep[points]
    strokes, srow = _ragged_take(pool.stroke_offsets, src)
    ids[row_start[srow] + n_head + pool.open_tok[strokes]] = STROKE_OPEN

    cells, lengths = TOKEN_WORDS[ids], TOKEN_LENGTHS[ids]  # (T,) uint64, (T,) uint8
    head_at = row_start[:, None] + np.arange(n_head)
    cells[head_at], lengths[head_at] = head_cells.view(np.uint64)[..., 0], head_len
    tail_at = (row_start + per_row - n_tail)[:, None] + np.arange(n_tail)
    cells[tail_at], lengths[tail_at] = tail_cells.view(np.uint64)[..., 0], tail_len
    keep = MASK_WORDS[lengths].view(np.bool_)  # (T * CELL,): the used bytes of each cell
    return cells.view(np.uint8)[keep].tobytes()


def row_keys(first: int, rows: int) -> np.ndarray:
    """Unique 16-digit key_ids of global rows first .. first + rows - 1."""
    g = np.arange(first, first + rows, dtype=np.int64)
    return KEY_BASE + (g * KEY_MULT) % 10**15


def train_text(
    pool: Pool, word: str, src: np.ndarray, keys: np.ndarray, rng: np.random.Generator
) -> bytes:
    """Rows of `train_simplified/<word>.csv` (countrycode,drawing,key_id,recognized,timestamp,
    word)."""
    rows = len(src)
    rec = pool.recognized[src]
    rec_text = np.where(
        rec[:, None], np.frombuffer(b"True,,", np.uint8), np.frombuffer(b"False,", np.uint8)
    )
    head = _fields([(np.hstack([pool.country[src], _const(b',"[', rows)]), None)])
    tail = _fields(
        [
            (np.hstack([_const(b']",', rows), _digits(keys), _const(b",", rows)]), None),
            (rec_text, np.where(rec, 5, 6)),
            (np.hstack([_timestamps(rng, rows), _const(b"," + word.encode() + b"\n", rows)]), None),
        ]
    )
    return render_rows(pool, src, rng, head, tail)


def test_text(pool: Pool, src: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> bytes:
    """Rows of `test_simplified.csv`: key_id,countrycode,drawing."""
    rows = len(src)
    head = _fields(
        [
            (
                np.hstack(
                    [_digits(keys), _const(b",", rows), pool.country[src], _const(b',"[', rows)]
                ),
                None,
            )
        ]
    )
    tail = _fields([(_const(b']"\n', rows), None)])
    return render_rows(pool, src, rng, head, tail)


def class_counts(drawings: int, n_classes: int, seed: int) -> np.ndarray:
    """Imbalanced per-class counts summing to `drawings`: seeded weights in `COUNT_WEIGHTS`."""
    if drawings < 10 * n_classes:
        raise PipelineError(
            f"--drawings {drawings:,} is too few for {n_classes} classes; "
            f"give at least {10 * n_classes:,}"
        )
    weights = np.random.default_rng([seed, 1]).uniform(*COUNT_WEIGHTS, n_classes)
    exact = drawings * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact)[: drawings - int(counts.sum())]] += 1  # largest remainders
    return counts


_POOL: Pool | None = None  # the source drawings, inherited by the forked generator processes


def _write_class(task: tuple[int, str, int, int, int, str]) -> tuple[int, float]:
    """Write one `train_simplified/<word>.csv`; its bytes and seconds."""
    label, word, rows, first_row, seed, path = task
    assert _POOL is not None
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 2, label])
    header = (",".join(TRAIN_COLUMNS) + "\n").encode()
    size = len(header)
    with open(path, "wb") as f:
        f.write(header)
        for lo in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - lo)
            src = rng.choice(_POOL.train_sources[label], n)
            text = train_text(_POOL, word, src, row_keys(first_row + lo, n), rng)
            f.write(text)
            size += len(text)
    return size, time.perf_counter() - start


def _write_test(
    pool: Pool, classes: list[str], rows: int, first_row: int, seed: int, out_dir: Path
) -> tuple[int, float]:
    """`test_simplified.csv` (balanced over the classes, shuffled) and `test_solution.csv`."""
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 3])
    n_classes = len(classes)
    per_class = np.full(n_classes, rows // n_classes)
    per_class[rng.choice(n_classes, rows % n_classes, replace=False)] += 1
    labels = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    sources = np.concatenate(pool.test_sources)
    n_sources = np.array([len(s) for s in pool.test_sources])
    first = np.cumsum(n_sources) - n_sources
    src = sources[first[labels] + (rng.random(rows) * n_sources[labels]).astype(np.int64)]
    keys = row_keys(first_row, rows)
    size = 0
    with open(out_dir / TEST_FILE, "wb") as f:
        f.write(b"key_id,countrycode,drawing\n")
        for lo in range(0, rows, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, rows)
            text = test_text(pool, src[lo:hi], keys[lo:hi], rng)
            f.write(text)
            size += len(text)
    tokens = np.array([label_token(c) for c in classes], dtype=object)
    solution = "".join(f"{k},{w}\n" for k, w in zip(keys.tolist(), tokens[labels], strict=True))
    (out_dir / SOLUTION_FILE).write_text("key_id,word\n" + solution)
    return size, time.perf_counter() - start


def generate(out_dir: str, drawings: int, test_rows: int, seed: int, processes: int) -> dict:
    """Write the Kaggle-layout folder `out_dir`; its figures (bytes, seconds, MB/s)."""
    global _POOL
    started = time.perf_counter()
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / TRAIN_DIR).mkdir(parents=True)
    classes = kaggle_classes()
    _POOL = pool = load_pool(classes)
    pool_s = time.perf_counter() - started
    counts = class_counts(drawings, len(classes), seed)
    first_rows = np.cumsum(counts) - counts
    tasks = [
        (
            c,
            classes[c],
            int(counts[c]),
            int(first_rows[c]),
            seed,
            str(out / TRAIN_DIR / f"{classes[c]}.csv"),
        )
        for c in np.argsort(-counts)
    ]
    write_start = time.perf_counter()
    train_bytes, cpu_s = 0, 0.0
    context = multiprocessing.get_context("fork")  # the workers inherit the pool
    with ProcessPoolExecutor(max(processes, 1), mp_context=context) as executor:
        test_future = executor.submit(_write_test, pool, classes, test_rows, drawings, seed, out)
        bar = progress(total=len(tasks), desc="generate", unit="file")
        for size, seconds in executor.map(_write_class, tasks):
            train_bytes += size
            cpu_s += seconds
            bar.update()
        bar.close()
        test_bytes, test_s = test_future.result()
    write_s = time.perf_counter() - write_start
    total = train_bytes + test_bytes
    figures = {
        "classes": len(classes),
        "source_drawings": len(pool.n_tokens),
        "train_rows": drawings,
        "test_rows": test_rows,
        "class_count_min": int(counts.min()),
        "class_count_max": int(counts.max()),
        "train_bytes": train_bytes,
        "test_bytes": test_bytes,
        "bytes_per_row": round(train_bytes / drawings, 1),
        "pool_s": round(pool_s, 2),
        "write_s": round(write_s, 2),
        "processes": processes,
        "mb_per_s": round(total / 1e6 / write_s, 1),
        "mb_per_s_per_process": round(total / 1e6 / (cpu_s + test_s), 1),
        "rows_per_s_per_process": round((drawings + test_rows) / (cpu_s + test_s)),
    }
    log.info(
        "generated %s train rows (%s MB) and %s test rows in %.1f s: %.1f MB/s, "
        "%.1f MB/s per process",
        f"{drawings:,}",
        f"{train_bytes / 1e6:,.0f}",
        f"{test_rows:,}",
        write_s,
        figures["mb_per_s"],
        figures["mb_per_s_per_process"],
    )
    return figures


def estimate_row_bytes(rows: int = 4_000, seed: int = 0) -> float:
    """Bytes per train row of generated CSV, from a sample over every class."""
    classes = kaggle_classes()
    pool = load_pool(classes)
    rng = np.random.default_rng([seed, 4])
    labels = rng.integers(len(classes), size=rows)
    src = np.array([rng.choice(pool.train_sources[c]) for c in labels])
    return len(train_text(pool, "x" * 12, src, row_keys(0, rows), rng)) / rows


# ---- the input pipeline alone --------------------------------------------------------------------


def loader_rates(
    store: str, params: str, names: list[str], worker_counts: list[int], seconds: float
) -> dict:
    """Drawings/s of `TrainBatches` + `make_loader` (no model) per member config in `names`, at
    its `batch_size` and at `GPU_BATCH`, per DataLoader worker count; each timed for `seconds`
    after its first batch (an epoch that ends sooner is followed by the next)."""
    import torch

    from pipeline.common.config import load_members, load_params
    from pipeline.core.features import Augment
    from pipeline.core.store import DrawingStore
    from pipeline.models import encoder_for
    from pipeline.training.batches import TrainBatches, make_loader

    torch.set_num_threads(1)
    raw = load_params(Path(params))
    raw["ensemble"] = {**raw["ensemble"], "members": names}
    n_blocks = DrawingStore(Path(store)).split("train").n_blocks
    figures: dict[str, Any] = {}
    for name, cfg in load_members(raw).items():
        encoder = encoder_for(cfg)
        for batch_size in dict.fromkeys([cfg.batch_size, GPU_BATCH]):
            dataset = TrainBatches(
                Path(store),
                "train",
                list(range(n_blocks)),
                batch_size,
                cfg.shuffle_buffer_blocks,
                encoder,
                Augment.from_train_cfg(cfg),
                cfg.seed,
            )
            for workers in worker_counts:
                dataset.set_epoch(0)
                start = time.perf_counter()
                batches = iter(make_loader(dataset, workers, pin_memory=False))
                next(batches)
                first_s = time.perf_counter() - start
                n, epoch, start = 0, 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    lengths = next(batches, (None, None, None))[1]
                    if lengths is None:  # a short split: the next epoch (its workers start anew)
                        epoch += 1
                        dataset.set_epoch(epoch)
                        batches = iter(make_loader(dataset, workers, pin_memory=False))
                        continue
                    n += len(lengths)
                rate = n / (time.perf_counter() - start)
                del batches  # stops the workers
                figures[f"{name}/batch{batch_size}/workers{workers}"] = {
                    "member": name,
                    "encoder": encoder.kind,
                    "batch_size": batch_size,
                    "workers": workers,
                    "image_size": encoder.image_size,
                    "first_batch_s": round(first_s, 2),
                    "drawings": n,
                    "epochs": epoch + 1,
                    "drawings_per_s": round(rate, 1),
                }
                log.info(
                    "input pipeline %s (%s), batch %d, %d workers: %s drawings/s",
                    name,
                    encoder.kind,
                    batch_size,
                    workers,
                    f"{rate:,.0f}",
                )
    return figures


# ---- running and measuring a step --------------------------------------------------------------

CHILD = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                    datefmt="%H:%M:%S")
from benchmarks import rehearsal
print(json.dumps(getattr(rehearsal, sys.argv[1])(*json.loads(sys.argv[2]))))
"""


@dataclasses.dataclass
class Measured:
    wall_s: float
    peak_pss_mb: float  # the whole process tree, sampled
    max_rss_mb: float  # the largest single process: the step and its reaped children, max
    returncode: int


# Each step runs under GNU time, which reports its child's peak RSS (the max over the child and
# its reaped descendants). Without it, wait4's figure is floored at this process's own RSS: a
# child exec'd from a vfork'd copy of us starts its high-water mark there.
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
MAX_RSS_SOURCE = (
    "GNU time %M of the step's process (max over it and its reaped children)"
    if TIME_BIN
    else "wait4 ru_maxrss (floored at the rehearsal process's own RSS)"
)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STEP_ENV: dict[str, str] = {}  # --threads: set for every step's process


def measure(cmd: list[str], cwd: Path, log_path: Path, sample_s: float = 0.25) -> Measured:
    """Run `cmd` (stdout to `<log>.out`, stderr to `log_path`); time and peak memory."""
    env = {
        **os.environ,
        **STEP_ENV,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_DIR), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".maxrss")
    if TIME_BIN:
        cmd = [TIME_BIN, "-f", "%M", "-o", str(rss_path), *cmd]
    with open(log_path.with_suffix(".out"), "w") as out, open(log_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env)
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_pss_kib(proc.pid))
                done.wait(sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    max_rss_kib = usage.ru_maxrss
    if TIME_BIN:
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_rss_kib = int(rss_path.read_text().split()[-1])
    return Measured(wall, peak[0] / 1024, max_rss_kib / 1024, proc.returncode)


def run_step(name: str, cmd: list[str], cwd: Path, logs: Path) -> tuple[Measured, str]:
    """`measure` a step; a failure is a PipelineError quoting the end of its log."""
    log.info("%s: %s", name, " ".join(cmd[2:] if cmd[1] == "-m" else [function_of(cmd)]))
    m = measure(cmd, cwd, logs / f"{name}.log")
    if m.returncode != 0:
        tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
        for line in tail:
            log.error("  %s", line)
        raise PipelineError(f"step {name} failed (exit {m.returncode}); log: {logs}/{name}.log")
    log.info(
        "%s: %.1f s, peak %s MB (tree PSS), %s MB (largest process RSS)",
        name,
        m.wall_s,
        f"{m.peak_pss_mb:,.0f}",
        f"{m.max_rss_mb:,.0f}",
    )
    return m, (logs / f"{name}.out").read_text()


def function_of(cmd: list[str]) -> str:
    """What a `CHILD` command runs, for the log."""
    return f"benchmarks.rehearsal.{cmd[3]}" if cmd[1] == "-c" else " ".join(cmd)


def call(name: str, function: str, args: list, cwd: Path, logs: Path) -> tuple[Measured, dict]:
    """`run_step` of a function of this module in a fresh interpreter; its JSON result."""
    m, out = run_step(name, [sys.executable, "-c", CHILD, function, json.dumps(args)], cwd, logs)
    return m, json.loads(out.strip().splitlines()[-1])


def stage(name: str, module: str, cwd: Path, logs: Path, *extra: str) -> Measured:
    return run_step(name, [sys.executable, "-m", module, *extra], cwd, logs)[0]


# ---- one scale: the data, every stage ----------------------------------------------------------


def write_params(
    run_dir: Path, data_dir: Path, members: list[str], train_s: float, blend_method: str | None
) -> Path:
    """The repo's params.yaml with the rehearsal's overrides, in `run_dir`."""
    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    params["download"] |= {"source": "local", "path": str(data_dir)}
    params["preprocess"] |= {
        "val_per_class": VAL_PER_CLASS,
        "blend_per_class": BLEND_PER_CLASS,
        "max_per_class": 0,
    }
    # Validate only at the end of the budget: 17,000 val drawings would eat a short one.
    params["train"] |= {
        "time_budget_s": float(train_s),
        "val_every_steps": 0,
        "val_every_s": float(train_s) * 100 + 3600.0,
    }
    params["ensemble"]["members"] = list(members)
    if blend_method:
        params["ensemble"]["method"] = blend_method
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _record(m: Measured, **figures: Any) -> dict[str, Any]:
    return {
        "wall_s": round(m.wall_s, 2),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "max_rss_mb": round(m.max_rss_mb, 1),
        **figures,
    }


def run_scale(drawings: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate `drawings` rows and run every stage on them; each step's figures."""
    scale_dir, logs = work / f"s{drawings}", work / "logs" / f"s{drawings}"
    shutil.rmtree(scale_dir, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    scale_dir.mkdir(parents=True)
    log.info("=== %s drawings in %s (logs: %s) ===", f"{drawings:,}", scale_dir, logs)
    started = time.perf_counter()
    try:
        steps = _run_steps(drawings, args, scale_dir, logs)
    except BaseException:
        log.warning("left %s as it was, for a look; remove it when done", scale_dir)
        raise
    if not args.keep:
        shutil.rmtree(scale_dir)
    return {
        "drawings": drawings,
        "test_rows": args.test_rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "steps": steps,
    }


def _run_steps(
    drawings: int, args: argparse.Namespace, scale_dir: Path, logs: Path
) -> dict[str, dict[str, Any]]:
    data_dir, run_dir = scale_dir / "kaggle", scale_dir / "run"
    steps: dict[str, dict[str, Any]] = {}
    m, gen = call(
        "generate",
        "generate",
        [str(data_dir), drawings, args.test_rows, args.seed, args.gen_processes],
        scale_dir,
        logs,
    )
    steps["generate"] = _record(m, own_s=gen["write_s"] + gen["pool_s"], **gen)
    params = write_params(run_dir, data_dir, args.members, args.train_s, args.blend_method)
    metrics_dir, live_dir = run_dir / "metrics", run_dir / "dvclive"

    m = stage("download", "pipeline.download", run_dir, logs)
    down = _read_json(metrics_dir / "download.json")
    steps["download"] = _record(m, own_s=down["time_s"], metrics=down)
    m = stage("preprocess", "pipeline.preprocess", run_dir, logs)
    pre = _read_json(metrics_dir / "preprocess.json")
    steps["preprocess"] = _record(m, own_s=pre["time_s"], metrics=pre)

    names = list(dict.fromkeys(["gru", "cnn", *args.members]))
    store = run_dir / "data" / "processed" / "drawings.zarr"
    loader_args = [str(store), str(params), names, [0, 2], args.loader_s]
    m, rates = call("input pipeline", "loader_rates", loader_args, run_dir, logs)
    steps["input pipeline"] = _record(m, rates=rates)

    for member in args.members:
        m = stage(f"train@{member}", "pipeline.train", run_dir, logs, "--member", member)
        live = _read_json(live_dir / member / "metrics.json")
        steps[f"train@{member}"] = _record(m, own_s=round(live["time_s"], 2), metrics=live)
    for name in ("blend", "evaluate", "predict"):
        m = stage(name, f"pipeline.{name}", run_dir, logs)
        figures = _read_json(metrics_dir / f"{name}.json")
        steps[name] = _record(m, own_s=figures["time_s"], metrics=figures)
    m, out = run_step(
        "submit --dry-run", [sys.executable, "-m", "pipeline.submit", "--dry-run"], run_dir, logs
    )
    steps["submit --dry-run"] = _record(m, check=out.strip().splitlines()[-1])
    return steps


# ---- disk, projection, tables ------------------------------------------------------------------

STORE_BYTES_PER_DRAWING = 100  # the store, about 96 (README); pass 2 holds the runs and the store


def disk_needed(scales: list[int], test_rows: int, row_bytes: float, keep: bool) -> int:
    """Bytes the rehearsal needs at once: 1.1 x the CSV plus twice the store, for the largest
    scale (or every scale when they are kept), plus 1 GB of models, checkpoints and logs."""
    need = [
        1.1 * (n + test_rows) * row_bytes + 2 * STORE_BYTES_PER_DRAWING * (n + test_rows)
        for n in scales
    ]
    return int((sum(need) if keep else max(need)) + 1e9)


def check_disk(work: Path, need: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < need:
        raise PipelineError(
            f"{work} has {free / 1e9:,.1f} GB free, the rehearsal needs about "
            f"{need / 1e9:,.1f} GB; free some space or pass --work DIR"
        )


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


READER_BYTES_PER_DRAWING = 8 + 2 + 8 + 1  # every SplitReader loads offsets, label, key_id, valid


def project(
    results: list[dict[str, Any]],
    gpu_rates: dict[str, float],
    stated: set[str],
    members: list[str],
    workers: int,
) -> list[dict[str, Any]]:
    """The competition on a 16-core, one-GPU machine, from the largest scale's figures (and the
    growth of memory between the smallest and the largest)."""
    result = results[-1]
    steps = result["steps"]
    gen, pre = steps["generate"], steps["preprocess"]["metrics"]
    rows: list[dict[str, Any]] = []

    def row(item: str, value: str, basis: str, kind: str) -> None:
        rows.append({"item": item, "value": value, "basis": basis, "figures": kind})

    drawings = result["drawings"]
    full_csv = KAGGLE_TRAIN * gen["bytes_per_row"]
    row(
        "train CSV",
        f"{full_csv / 1e9:,.1f} GB",
        f"{gen['bytes_per_row']:.0f} bytes per "
        f"generated row x {KAGGLE_TRAIN:,} (Kaggle's own: about 23 GB)",
        "projected",
    )
    per_worker = gen["train_bytes"] / 1e6 / pre["pass1_s"] / workers
    pass1_min = full_csv / 1e6 / (per_worker * PROJECTED_CORES) / 60
    row(
        "preprocess pass 1 (parse, 16 workers)",
        f"{pass1_min:,.1f} min",
        f"{per_worker:,.1f} MB/s of CSV per worker measured at {drawings:,} drawings "
        f"({workers} workers, pass1_s {pre['pass1_s']:.1f}) x {PROJECTED_CORES}",
        "projected",
    )
    stored = pre["train/drawings"] + pre["val/drawings"] + pre["blend/drawings"]
    rest_s = pre["time_s"] - pre["pass1_s"]
    rest_rate = stored / max(rest_s, 1e-9)
    full_stored = KAGGLE_TRAIN - pre["rejected_rows"] * KAGGLE_TRAIN / drawings
    rest_min = full_stored / rest_rate / 60
    row(
        "preprocess pass 2 (merge, write, digests: serial)",
        f"{rest_min:,.1f} min",
        f"{rest_rate:,.0f} drawings/s measured (time_s - pass1_s = {rest_s:.1f} s)",
        "projected",
    )
    row("preprocess total", f"{pass1_min + rest_min:,.1f} min", "the two passes", "projected")
    row(
        "store",
        f"{pre['bytes_per_drawing'] * (KAGGLE_TRAIN + KAGGLE_TEST) / 1e9:,.1f} GB",
        f"{pre['bytes_per_drawing']:.0f} B/drawing measured",
        "projected",
    )
    train_full = KAGGLE_TRAIN - KAGGLE_CLASSES * (VAL_PER_CLASS + BLEND_PER_CLASS)
    rates = steps["input pipeline"]["rates"]
    for member in members:
        gpu = gpu_rates[member]
        kind = "stated, not measured" if member in stated else "measured (given)"
        gpu_h = train_full / gpu / 3600
        row(
            f"{member}: epoch on the GPU",
            f"{gpu_h:,.2f} h",
            f"{train_full:,} drawings / {gpu:,.0f} samples/s",
            f"projected from a rate {kind}",
        )
        one = rates.get(f"{member}/batch{GPU_BATCH}/workers0")
        two = rates.get(f"{member}/batch{GPU_BATCH}/workers2")
        if one and two:
            high = one["drawings_per_s"] * PROJECTED_LOADER_WORKERS
            low = min(two["drawings_per_s"] / 2 * PROJECTED_LOADER_WORKERS, high)
            size = f", {one['image_size']} px" if one["encoder"] == "image" else ""
            row(
                f"{member}: input pipeline, {PROJECTED_LOADER_WORKERS} workers",
                f"{low:,.0f} to {high:,.0f} drawings/s",
                f"{PROJECTED_LOADER_WORKERS} x half the 2-worker rate ({two['drawings_per_s']:,.0f}"
                f"/s: worker-to-trainer transfer and this box's contention included) to "
                f"{PROJECTED_LOADER_WORKERS} x the in-process rate "
                f"({one['drawings_per_s']:,.0f}/s); {one['encoder']}, batch {GPU_BATCH}{size}",
                "projected from measured",
            )
            bound = "GPU" if gpu <= low else "input pipeline (at the low figure)"
            row(
                f"{member}: epoch",
                f"{train_full / min(gpu, low) / 3600:,.2f} h",
                f"the slower of the GPU and the low input figure: {bound}-bound",
                "projected",
            )
    reader_gb = READER_BYTES_PER_DRAWING * train_full / 1e9
    if len(results) > 1:
        small, big = results[0]["steps"], steps
        grew = [
            (big[f"train@{m}"]["max_rss_mb"] - small[f"train@{m}"]["max_rss_mb"])
            * 1e6
            / (
                big[f"train@{m}"]["metrics"]["train/drawings"]
                - small[f"train@{m}"]["metrics"]["train/drawings"]
            )
            for m in members
        ]
        measured = "; measured growth of the train stage's peak RSS: " + ", ".join(
            f"{m} {g:,.0f} B/drawing" for m, g in zip(members, grew, strict=True)
        )
    else:
        measured = ""
    row(
        "memory per process reading the train split (trainer, each DataLoader worker)",
        f"{reader_gb:,.2f} GB; {reader_gb * (PROJECTED_LOADER_WORKERS + 1):,.0f} GB with "
        f"{PROJECTED_LOADER_WORKERS} workers",
        f"{READER_BYTES_PER_DRAWING} B/drawing of per-drawing arrays every SplitReader loads "
        f"(offsets, label, key_id, valid) x {train_full:,}{measured}",
        "projected",
    )
    sizes = {
        "blend": ("blend/drawings", KAGGLE_CLASSES * BLEND_PER_CLASS),
        "evaluate": ("val/drawings", KAGGLE_CLASSES * VAL_PER_CLASS),
        "predict": ("test/rows", KAGGLE_TEST),
    }
    for name, (key, competition) in sizes.items():
        n = steps[name]["metrics"][key]
        same = n == competition
        row(
            f"{name}, {n:,} drawings",
            f"{steps[name]['wall_s']:,.0f} s",
            f"this machine's CPU ({os.cpu_count()} cores); "
            + ("the competition's size" if same else f"the competition's: {competition:,}"),
            "measured" if same else "measured, at another size",
        )
    return rows


def projection_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| {KAGGLE_TRAIN:,} train drawings, {KAGGLE_TEST:,} test rows, "
        f"{PROJECTED_CORES} cores + 1 GPU | value | basis | figures |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r['item']} | {r['value']} | {r['basis']} | **{r['figures']}** |" for r in rows]
    return lines


# ---- command line --------------------------------------------------------------------------------


def _gpu_rates(text: str) -> tuple[dict[str, float], set[str]]:
    rates, stated = dict(STATED_GPU_RATES), set(STATED_GPU_RATES)
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            rates[name.strip()] = 0.0
        if not rates[name.strip()] > 0:
            raise PipelineError(f"--gpu-samples-per-s: {item!r} is not member=rate (> 0)")
        stated.discard(name.strip())
    return rates, stated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drawings", type=int, default=5_000_000, help="train rows at scale 1.0")
    parser.add_argument("--test-rows", type=int, default=KAGGLE_TEST)
    parser.add_argument("--scales", default="0.2,1.0", help="fractions of --drawings, in order")
    parser.add_argument("--train-s", type=float, default=60.0, help="time_budget_s per member")
    parser.add_argument("--members", help="ensemble.members, comma-separated (default: params)")
    parser.add_argument(
        "--gpu-samples-per-s",
        default="",
        help="member=rate,... measured GPU training rates for the projection "
        f"(default: stated placeholders {STATED_GPU_RATES})",
    )
    parser.add_argument(
        "--blend-method",
        choices=("logreg", "weights", "mean"),
        help="ensemble.method (default: params.yaml's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP/MKL/OpenBLAS threads of every step (default 0: the stages' own; torch then "
        "takes every core in blend, evaluate and predict)",
    )
    parser.add_argument(
        "--loader-s", type=float, default=5.0, help="seconds per input-pipeline measurement"
    )
    parser.add_argument("--gen-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--keep", action="store_true", help="keep each scale's data and outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "rehearsal.json")
    args = parser.parse_args(argv)
    with user_errors():
        run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.common.config import load_members
    from pipeline.models import family  # an unknown model fails now, not after preprocess

    params = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    if args.members:
        args.members = [m.strip() for m in args.members.split(",")]
        params["ensemble"] = {**params["ensemble"], "members": args.members}
    args.members = list(params["ensemble"]["members"])
    given, stated_rates = _gpu_rates(args.gpu_samples_per_s)
    gpu_rates, stated = {}, set()
    for name, cfg in load_members(params).items():
        family(cfg.model)
        key = name if name in given else cfg.model  # a member's own rate, else its family's
        if key not in given:
            raise PipelineError(
                f"no GPU rate for member {name}; pass --gpu-samples-per-s {name}=RATE"
            )
        gpu_rates[name] = given[key]
        if key in stated_rates:
            stated.add(name)
    if args.threads > 0:
        STEP_ENV.update(dict.fromkeys(THREAD_VARIABLES, str(args.threads)))
    fractions = [float(f) for f in args.scales.split(",")]
    scales = [round(args.drawings * f) for f in fractions]
    work = args.work.expanduser().resolve()
    row_bytes = estimate_row_bytes()
    need = disk_needed(scales, args.test_rows, row_bytes, args.keep)
    check_disk(work, need)
    log.info(
        "rehearsal: scales %s drawings, %s test rows, members %s, %s s each; about %.1f GB "
        "of disk in %s",
        ", ".join(f"{n:,}" for n in scales),
        f"{args.test_rows:,}",
        ", ".join(args.members),
        args.train_s,
        need / 1e9,
        work,
    )
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cores": os.cpu_count(),
        "max_rss_source": MAX_RSS_SOURCE,
        "threads": args.threads or "the stages' own",
        "classes": kaggle_classes(),
        "not_in_kaggle": list(NOT_IN_KAGGLE),
        "gpu_samples_per_s": gpu_rates,
        "gpu_rates_stated_not_measured": sorted(stated),
        "scales": [],
        "complete": False,
    }
    results = figures["scales"]
    for n in scales:
        results.append(run_scale(n, args, work))
        _write_json(args.out, figures)  # a later failure keeps the scales done
    workers = os.cpu_count() or 1  # preprocess.workers 0: all cores
    projection = project(results, gpu_rates, stated, args.members, workers)

    out = [
        "",
        f"Peak memory: tree PSS = the sum over the step's processes, sampled every 0.25 s; "
        f"largest-process RSS = {MAX_RSS_SOURCE}. Threads: "
        + (f"{args.threads} per step" if args.threads else "the stages' own")
        + ".",
    ]
    for result in results:
        out += ["", *scale_table(result), "", *loader_table(result)]
    if len(results) > 1:
        out += [
            "",
            "Scaling (training has a fixed time budget, and blend, evaluate and predict "
            "fixed-size splits: flat by design; preprocess's memory is bounded by design, "
            "and every reader of the train split holds 19 B per drawing):",
            "",
            *scaling_table(results),
        ]
    out += [
        "",
        "Projection: the full competition on 16 cores and one GPU (GPU rates: "
        + ", ".join(
            f"{m} {gpu_rates[m]:,.0f}/s" + (" stated, not measured" if m in stated else " measured")
            for m in args.members
        )
        + ")",
        "",
        *projection_table(projection),
    ]
    total_s = time.perf_counter() - started
    out += ["", f"rehearsal wall time {total_s / 60:,.1f} min on {os.cpu_count()} cores"]
    print("\n".join(out))
    figures |= {"projection": projection, "wall_s": round(total_s, 1), "complete": True}
    _write_json(args.out, figures)
    log.info("figures -> %s", args.out)
    return figures


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
