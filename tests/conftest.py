"""Shared fixtures and builders: the real-data folder, a tiny params set, a repo-like working
folder, small stores and checkpoints made the way the stages make them; and the independent
references (MAP@3, ranking, prior balancing, the drawing format) that tests judge the pipeline
against, each worked out from its definition without calling the code it checks."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.core.reasons import Reason
from pipeline.core.store import DrawingStore, SplitWriter, create_store, record_digests
from pipeline.models import FAMILIES
from pipeline.models.checkpoint import model_meta
from pipeline.models.members import TRAIN_KEYS, MemberConfig
from pipeline.models.members import member_config as mc
from pipeline.models.predictor import Predictor
from pipeline.scoring.stacking import Blend, fit_blend

REPO_DIR = Path(__file__).resolve().parents[1]
# Real Quick, Draw! data lives beside the repo (../shared/quickdraw), never inside it.
SHARED_QUICKDRAW = Path(
    os.environ.get("QUICKDRAW_SHARED", REPO_DIR.parent / "shared" / "quickdraw")
).resolve()


@pytest.fixture(scope="session")
def kaggle16_dir() -> Path:
    path = SHARED_QUICKDRAW / "kaggle16"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set QUICKDRAW_SHARED)")
    return path


@pytest.fixture(scope="session")
def ndjson345_dir() -> Path:
    path = SHARED_QUICKDRAW / "ndjson345"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set QUICKDRAW_SHARED)")
    return path


@pytest.fixture
def params() -> dict:
    """The repo's params, shrunk so a whole pipeline runs in seconds."""
    return tiny_params()


def tiny_params() -> dict:
    """The repo's params, shrunk so a whole pipeline runs in seconds (fresh dict each call)."""
    p = yaml.safe_load((REPO_DIR / "params.yaml").read_text())
    p["download"].update(
        synthetic_classes=5, synthetic_train_per_class=60, synthetic_test_per_class=8
    )
    p["preprocess"].update(val_per_class=10, blend_per_class=10, block_size=64, workers=1)
    p["train"].update(
        epochs=2,
        batch_size=32,
        checkpoint_every_s=0,
        workers=0,
        val_every_steps=0,  # validate at each epoch's end: tiny runs have a few epochs
    )
    for name in ("gru", "bilstm"):
        p["members"][name].update(hidden_size=16, num_layers=1, conv_channels=[8, 8])
    p["members"]["cnn"].update(image_size=32)
    # One member (gru) keeps a whole pipeline tiny; ensemble tests name more (see `make_ensemble`).
    p["ensemble"].update(members=["gru"], batch_size=64)
    p["evaluate"].update(batch_size=64, gallery_size=4)
    p["predict"].update(batch_size=64)
    return p


@pytest.fixture
def workdir(tmp_path: Path, params: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out like the repo root (params.yaml), made the cwd."""
    write_params(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(root: Path, params: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_store(
    path: Path, classes: list[str], splits: dict[str, Drawings], block_size: int = 16
) -> Path:
    """A store of these splits with the root attrs preprocess writes (counts per class)."""
    counts = {
        split: dict(
            zip(
                classes,
                np.bincount(d.labels[d.labels >= 0], minlength=len(classes)).tolist(),
                strict=True,
            )
        )
        for split, d in splits.items()
        if split != "test"
    }
    counts["test"] = len(splits["test"]) if "test" in splits else 0
    root = create_store(path, classes, {"counts": counts, "params": {}})
    for split, drawings in splits.items():
        with SplitWriter(root, split, block_size) as writer:
            writer.append(drawings)
    record_digests(root)
    return path


def member_config(params: dict, name: str = "gru", **changes: object) -> MemberConfig:
    """Member `name` of the tiny params, single-threaded and validating at each epoch's end,
    with `changes` going to its family's keys or its `train` keys. `model=` makes it another
    family, whose keys come from the params' member of that name."""
    members = params["members"]
    own = dict(members[name])
    if "model" in changes and changes["model"] != own["model"]:
        own = {k: v for k, v in members.get(changes["model"], {}).items() if k not in TRAIN_KEYS}
    own |= {"model": changes.pop("model", own.get("model"))}
    own |= {"threads": 1, "shuffle_buffer_blocks": 2, "val_every_steps": 0, "val_every_s": 0}
    own |= {"time_budget_s": 0} | changes
    return mc(name, own, params)


def polygon_drawings(n_classes: int, per_class: int, seed: int) -> Drawings:
    """Class c is a jittered polygon with c + 3 corners, randomly placed: easy but not trivial."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for i in range(n_classes * per_class):
        c = i % n_classes
        corners = c + 3
        angle = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, corners + 1)
        radius, centre = rng.uniform(30, 100), rng.uniform(100, 156, 2)
        xs = np.clip(centre[0] + radius * np.cos(angle) + rng.normal(0, 3, corners + 1), 0, 255)
        ys = np.clip(centre[1] + radius * np.sin(angle) + rng.normal(0, 3, corners + 1), 0, 255)
        items.append([(xs.astype(int).tolist(), ys.astype(int).tolist())])
        labels.append(c)
    return Drawings.from_strokes(items, labels)


def make_polygon_store(
    path: Path, n_classes: int = 4, per_class: int = 40, block_size: int = 32
) -> Path:
    """train and val splits of `polygon_drawings` (classes shape0, shape1, ...)."""
    splits = {
        "train": polygon_drawings(n_classes, per_class, 0),
        "val": polygon_drawings(n_classes, per_class // 4, 1),
    }
    return write_store(path, [f"shape{c}" for c in range(n_classes)], splits, block_size)


CLASSES = ["cat", "eye", "paint can", "snowman", "sun", "tree"]
TRAIN_COUNTS = [5, 9, 2, 7, 1, 3]  # most frequent: eye, snowman, cat


def random_drawings(rng: np.random.Generator, n: int) -> list[list[tuple[list[int], list[int]]]]:
    """n drawings of 1-3 strokes with 2-12 points each, coordinates 0-255."""
    return [
        [
            (rng.integers(0, 256, k).tolist(), rng.integers(0, 256, k).tolist())
            for k in rng.integers(2, 13, rng.integers(1, 4))
        ]
        for _ in range(n)
    ]


def labelled_random_drawings(rng: np.random.Generator, n: int) -> Drawings:
    """n drawings of 1-3 strokes with 1-8 points each, labels 0-4, key_ids a permutation of
    0..n-1 (so gathers and slices can be checked column by column)."""
    strokes = [
        [
            (rng.integers(0, 256, k).tolist(), rng.integers(0, 256, k).tolist())
            for k in rng.integers(1, 9, rng.integers(1, 4))
        ]
        for _ in range(n)
    ]
    return Drawings.from_strokes(
        strokes, rng.integers(0, 5, n).tolist(), rng.permutation(n).tolist()
    )


def make_labelled_store(
    path: Path,
    n_val: int = 24,
    n_test: int = 30,
    invalid: tuple[int, ...] = (),
    test_labels: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny store; test rows in `invalid` are stored empty with valid=False, like preprocess."""
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(len(CLASSES)), TRAIN_COUNTS)
    train = Drawings.from_strokes(random_drawings(rng, len(train_labels)), train_labels)
    val_labels = np.arange(n_val) % len(CLASSES)
    val = Drawings.from_strokes(random_drawings(rng, n_val), val_labels, 1000 + np.arange(n_val))
    strokes = random_drawings(rng, n_test)
    for i in invalid:
        strokes[i] = []
    labels = rng.integers(0, len(CLASSES), n_test) if test_labels else None
    key_ids = rng.permutation(np.arange(5_000_000, 5_000_000 + n_test))  # not sorted: order matters
    valid = np.ones(n_test, bool)
    valid[list(invalid)] = False
    test = Drawings.from_strokes(strokes, labels, key_ids).with_columns(valid=valid)
    return write_store(path, CLASSES, {"train": train, "val": val, "test": test}, 16)


def make_checkpoint(
    path: Path, model: str = "gru", seed: int = 0, classes: list[str] = CLASSES
) -> Path:
    """An untrained but complete checkpoint in the training stage's format (small: a `cnn` one
    is a resnet10t on 32-pixel images)."""
    small = {"hidden_size": 8, "num_layers": 1, "conv_channels": [8], "max_points": 32}
    if model == "cnn":
        small = {"image_size": 32, "backbone": "resnet10t", "max_points": 32}
    member = member_config(tiny_params(), "gru", model=model, **small)
    torch.manual_seed(seed)
    net = member.build(len(classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "meta": model_meta(member, classes)}, path)
    return path


def make_ensemble(
    paths: Paths,
    members: Sequence[str] = ("gru",),
    method: str = "mean",
    fit_split: str = "val",
    classes: list[str] = CLASSES,
    **checkpoint_kwargs: object,
) -> Blend:
    """What evaluate and predict read, as the train and blend stages leave it: an untrained
    checkpoint per member at `paths.for_member(name).model_path` (of the family the member is
    named after, else gru; seeded by its position, so members differ) and their blend at
    `paths.blend_path`: `mean`, or `logreg` / `weights` fitted on the store's `fit_split`."""
    for i, name in enumerate(members):
        kwargs = {"model": name if name in FAMILIES else "gru", "seed": i} | checkpoint_kwargs
        make_checkpoint(paths.for_member(name).model_path, classes=classes, **kwargs)
    if method == "mean":
        probas = [np.zeros((0, len(classes)), np.float32)] * len(members)
        labels = np.zeros(0, np.int64)
    else:
        drawings = DrawingStore(paths.store_path).split(fit_split).read()
        predictor = Predictor.load(paths, classes, members=members)
        probas = list(predictor.member_probas(drawings, 64).values())
        labels = drawings.labels.astype(np.int64)
    blend = fit_blend(probas, labels, members, method, classes=classes)
    blend.save(paths.blend_path)
    return blend


def clone_repo(dst: Path) -> Path:
    """Copy the files git tracks (or would track) into a fresh git repo: a clean clone."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        if (REPO_DIR / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_DIR / name, dst / name)
    # What `make setup` adds to a clone: the offline plots page (git-ignored, generated).
    subprocess.run(
        [sys.executable, "-m", "pipeline.plots"], cwd=dst, check=True, capture_output=True
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=dst, check=True)
    return dst


# ---------------------------------------------------------------- independent references


def reference_apk(actual: list[int], predicted: list[int], k: int = 3) -> float:
    """Kaggle's ml_metrics.average_precision.apk, copied as the straightforward reference:
    a hit at rank 1, 2, 3 scores 1, 1/2, 1/3; a repeated label counts once."""
    predicted = predicted[:k]
    score, num_hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    return score / min(len(actual), k) if actual else 0.0


def reference_top_k(proba: np.ndarray, k: int = 3) -> list[list[int]]:
    """Each row's k highest-scoring classes, best first, ties to the lower class index: a plain
    Python sort of every row."""
    rows = np.asarray(proba, np.float64).tolist()
    return [sorted(range(len(row)), key=lambda c: (-row[c], c))[:k] for row in rows]


def reference_scores(top: Sequence[Sequence[int]], labels: Sequence[int]) -> dict[str, float]:
    """{"map3", "top1", "top3"} of rankings (best first) against one true label per row."""
    pairs = list(zip(np.asarray(labels).tolist(), [list(t) for t in top], strict=True))
    return {
        "map3": sum(reference_apk([label], t) for label, t in pairs) / len(pairs),
        "top1": sum(t[0] == label for label, t in pairs) / len(pairs),
        "top3": sum(label in t[:3] for label, t in pairs) / len(pairs),
    }


def reference_blend(path: Path, probas: Sequence[np.ndarray]) -> np.ndarray:
    """The (N, C) probabilities a blend file makes of its members' M x (N, C), in float64,
    read from the file's plain arrays and combined as pipeline/scoring/stacking.py documents
    it: `mean` averages the probabilities; `logreg` is a softmax of the members' log-
    probabilities (floored at 1e-6) side by side, (N, M*C) @ coef.T (C, M*C) + intercept (C,);
    `weights` a softmax of sum_m coef[m] * log p_m + intercept."""
    with np.load(path, allow_pickle=False) as f:
        about = json.loads(str(f["about"]))
        coef, intercept = f["coef"].astype(np.float64), f["intercept"].astype(np.float64)
    assert len(about["members"]) == len(probas)
    logs = [np.log(np.maximum(np.asarray(p, np.float64), 1e-6)) for p in probas]
    if about["method"] == "mean":
        return np.mean(np.asarray(probas, np.float64), axis=0)
    if about["method"] == "logreg":
        logits = np.concatenate(logs, axis=1) @ coef.T + intercept
    else:
        logits = sum(w * lp for w, lp in zip(coef, logs, strict=True)) + intercept
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_balance(proba: np.ndarray, max_iter: int = 100_000) -> np.ndarray:
    """proba (N, C) reweighted per class so every class gets a soft mass of N / C, rows summing
    to 1: textbook iterative proportional fitting in float64, run to convergence. For positive
    proba the balanced rows are unique, so any correct solver must land here."""
    p = np.asarray(proba, np.float64)
    n, n_classes = p.shape
    weights = np.ones(n_classes)
    for _ in range(max_iter):
        q = p * weights
        q /= q.sum(axis=1, keepdims=True)
        mass = q.sum(axis=0)
        if np.abs(mass / (n / n_classes) - 1).max() < 1e-12:
            return q
        weights *= (n / n_classes) / mass
    raise AssertionError("reference_balance did not converge")


def reference_parse(text: str | bytes) -> tuple[Reason, np.ndarray | None]:
    """A drawing string judged by the format's definition (pipeline/ingest/parse.py docstring),
    with json.loads: (reason, points (n, 3) uint8 x, y, pen = 1 on each stroke's last point).

    Simplified: a JSON list of strokes [xs, ys], integers 0..255. Raw: every stroke [xs, ys, ts]
    of finite numbers, shifted to a minimum of 0, scaled so the longer side is 255, rounded.
    Reasons, first match wins: unparseable (not JSON, wrong nesting, a non-integer simplified
    coordinate), xy_mismatch (lists of a stroke differ in length), empty (no strokes, or a stroke
    without points), out_of_range (a simplified coordinate outside 0..255, or raw coordinates
    whose extent a float cannot hold). Points are None when rejected.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text.strip():
        return Reason.EMPTY, None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return Reason.UNPARSEABLE, None
    if not isinstance(obj, list):
        return Reason.UNPARSEABLE, None
    if not obj:
        return Reason.EMPTY, None
    if not all(isinstance(s, list) for s in obj) or {len(s) for s in obj} not in ({2}, {3}):
        return Reason.UNPARSEABLE, None
    raw = len(obj[0]) == 3

    def is_coordinate(v: object) -> bool:
        if isinstance(v, bool):
            return False
        return isinstance(v, int) or (raw and isinstance(v, float) and math.isfinite(v))

    if not all(isinstance(a, list) and all(map(is_coordinate, a)) for s in obj for a in s):
        return Reason.UNPARSEABLE, None
    if any(len({len(a) for a in s}) > 1 for s in obj):
        return Reason.XY_MISMATCH, None
    if any(not s[0] for s in obj):
        return Reason.EMPTY, None
    xs = [v for s in obj for v in s[0]]
    ys = [v for s in obj for v in s[1]]
    if raw:
        try:
            xs, ys = [float(v) for v in xs], [float(v) for v in ys]
        except OverflowError:
            return Reason.OUT_OF_RANGE, None
        x0, y0 = min(xs), min(ys)
        extent = max(max(xs) - x0, max(ys) - y0)
        if not math.isfinite(extent):
            return Reason.OUT_OF_RANGE, None
        scale = 255.0 / extent if extent > 0 else 1.0
        xs = [min(max(round((v - x0) * scale), 0), 255) for v in xs]
        ys = [min(max(round((v - y0) * scale), 0), 255) for v in ys]
    elif not all(0 <= v <= 255 for v in xs + ys):
        return Reason.OUT_OF_RANGE, None
    pen = [int(i == len(s[0]) - 1) for s in obj for i in range(len(s[0]))]
    return Reason.OK, np.array([xs, ys, pen], np.uint8).T.reshape(-1, 3)
