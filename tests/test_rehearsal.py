"""The rehearsal (benchmarks/rehearsal/): its data generator at a tiny scale (Kaggle's layout,
exact text, unique keys, imbalanced train and balanced test, accepted by the `local` source), and
its accounting of bytes on disk (blocks, each inode once) and of DVC's cache."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.rehearsal import competition, csvgen, csvtext, disk, dvccache, pool, project_disk
from pipeline.common.errors import PipelineError
from pipeline.core.layout import TEST_COLUMNS, TRAIN_COLUMNS, count_rows, label_token
from pipeline.ingest.parse import parse_drawings
from pipeline.sources.local import copy_local

DRAWINGS, TEST_ROWS = 6_800, 680


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, ndjson345_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rehearsal") / "kaggle"
    figures = csvgen.generate(str(out), DRAWINGS, TEST_ROWS, seed=0, processes=1)
    return out, figures


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_competition_classes(ndjson345_dir: Path, kaggle16_dir: Path) -> None:
    classes = competition.kaggle_classes()
    assert len(classes) == 340 == len(set(classes))
    assert not set(competition.NOT_IN_KAGGLE) & set(classes)
    kaggle16 = {p.stem for p in (kaggle16_dir / "train_simplified").glob("*.csv")}
    assert kaggle16 <= set(classes)


def test_layout_counts_and_keys(generated: tuple[Path, dict]) -> None:
    out, figures = generated
    files = sorted((out / "train_simplified").glob("*.csv"))
    assert sorted(f.stem for f in files) == competition.kaggle_classes()
    counts = [count_rows(f) for f in files]
    assert sum(counts) == DRAWINGS == figures["train_rows"]
    assert min(counts) < 0.5 * DRAWINGS / 340 < 1.5 * DRAWINGS / 340 < max(counts)  # imbalanced
    keys = []
    for f in files[:20]:
        rows = read_rows(f)
        assert list(rows[0]) == list(TRAIN_COLUMNS)
        assert {r["word"] for r in rows} == {f.stem}
        assert {r["recognized"] for r in rows} <= {"True", "False"}
        assert all(len(r["timestamp"]) == 25 and r["timestamp"][10] == " " for r in rows)
        keys += [r["key_id"] for r in rows]
    test = read_rows(out / "test_simplified.csv")
    solution = read_rows(out / "test_solution.csv")
    assert list(test[0]) == list(TEST_COLUMNS) and len(test) == TEST_ROWS
    assert [r["key_id"] for r in solution] == [r["key_id"] for r in test]
    by_class = Counter(r["word"] for r in solution)
    assert set(by_class.values()) == {TEST_ROWS // 340}  # balanced
    assert set(by_class) == {label_token(c) for c in competition.kaggle_classes()}
    keys += [r["key_id"] for r in test]
    assert len(set(keys)) == len(keys) and all(len(k) == 16 and k.isdigit() for k in keys)
    assert figures["mb_per_s"] > 0


def test_drawings_parse_like_kaggle(generated: tuple[Path, dict]) -> None:
    out, _ = generated
    rows = read_rows(out / "train_simplified" / "cat.csv")
    texts = [r["drawing"] for r in rows]
    for text in texts:
        strokes = json.loads(text)
        assert text == json.dumps(strokes)  # Kaggle's spacing: "[[[1, 2], [3, 4]], ..."
        assert all(len(s) == 2 and len(s[0]) == len(s[1]) >= 1 for s in strokes)
        assert all(0 <= v <= 255 for s in strokes for axis in s for v in axis)
    parsed = parse_drawings(texts)  # the pipeline's own parser takes every row
    assert (parsed.column("reason") == 0).all()


def test_copies_keep_the_source_strokes(
    monkeypatch: pytest.MonkeyPatch, ndjson345_dir: Path
) -> None:
    """With no jitter, scale or shift, a row is its source drawing exactly."""
    monkeypatch.setattr(csvtext, "JITTER_PX", 0)
    monkeypatch.setattr(csvtext, "SHIFT_PX", 0.0)
    monkeypatch.setattr(csvtext, "SCALE_RANGE", (1.0, 1.0))
    classes = competition.kaggle_classes()[:3]
    drawings = pool.load_pool(classes)
    src = np.arange(len(drawings.n_tokens))
    keys = csvtext.row_keys(0, len(src))
    text = csvtext.test_text(drawings, src, keys, np.random.default_rng(0))
    rows = list(csv.reader(text.decode().splitlines()))
    sources = [d for found in pool.read_sources(classes) for d in found]
    assert len(rows) == len(sources)
    for row, (strokes, country, _) in zip(rows, sources, strict=True):
        assert json.loads(row[2]) == strokes and row[1] == country


def test_the_local_source_takes_it(generated: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = generated
    (tmp_path / "raw").mkdir()
    stats = copy_local(out, tmp_path / "raw")
    assert stats == {"train/files": 340, "train/rows": DRAWINGS, "test/rows": TEST_ROWS}


def test_disk_check_refuses_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="GB free, the rehearsal needs about"):
        disk.check_disk(tmp_path, 10**18)


def test_bytes_on_disk_are_blocks_and_a_hard_link_counts_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    data = tmp_path / "a" / "data.bin"
    data.write_bytes(os.urandom(100_000))
    os.link(data, tmp_path / "a" / "link.bin")
    sparse = tmp_path / "a" / "sparse.bin"
    with open(sparse, "wb") as f:  # 64 MiB long, one 4 KiB block written: a hole, not data
        f.seek(64 << 20)
        f.write(b"x" * 4096)
    blocks = {p: os.lstat(p).st_blocks * 512 for p in (tmp_path / "a", data, sparse)}
    assert blocks[data] >= 100_000 and blocks[sparse] < 1 << 20
    assert disk.bytes_on_disk(tmp_path / "a") == sum(blocks.values())  # the link adds nothing
    seen: set[tuple[int, int]] = set()
    assert disk.bytes_on_disk(data, seen) == blocks[data]
    assert disk.bytes_on_disk(tmp_path / "a" / "link.bin", seen) == 0  # counted once across calls
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "copy.bin").write_bytes(data.read_bytes())  # a copy is counted again
    assert disk.bytes_on_disk(tmp_path / "b", seen) >= 100_000


def test_usage_gives_an_inode_to_the_first_part_that_holds_it(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw" / "train_simplified"
    raw.mkdir(parents=True)
    (raw / "cat.csv").write_bytes(os.urandom(50_000))
    cache = tmp_path / ".dvc" / "cache"
    cache.mkdir(parents=True)
    os.link(raw / "cat.csv", cache / "linked")  # a linking cache type: the cache adds ~nothing
    parts = disk.usage(tmp_path)
    assert parts["raw train CSV"] >= 50_000
    assert parts["dvc cache"] < 50_000 <= parts["total"] < 2 * 50_000
    (cache / "copied").write_bytes((raw / "cat.csv").read_bytes())  # a copying one: all again
    assert disk.usage(tmp_path)["dvc cache"] >= 50_000


def test_peak_bytes_sees_what_a_step_removes(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "big").write_bytes(os.urandom(200_000))
    with disk.PeakBytes(tmp_path, skip=("raw",), every_s=60) as peak:
        (tmp_path / "runs").write_bytes(os.urandom(80_000))
        peak.sample()
        (tmp_path / "runs").unlink()
    assert 80_000 <= peak.figures()["bytes"] < 200_000


def test_cached_outs_follow_dvc_yaml() -> None:
    outs = dvccache.cached_outs(["gru", "cnn"])
    assert {"data/raw", "data/processed", "models/members/gru/model.pt"} <= set(outs)
    assert "models/members/cnn/model.pt" in outs and not any("$" in o for o in outs)
    assert not any(o.startswith(("metrics/", "reports/", "dvclive/")) for o in outs)  # cache: false


def test_the_disk_projection_scales_by_drawings_and_judges_the_target() -> None:
    """1,000 drawings of 1,000 bytes of CSV and 100 bytes of store: a cache that copies both
    doubles them, one that links adds nothing."""
    stages = {
        "raw train CSV": 1_000_000,
        "raw test CSV": 0,
        "store": 101_000,
        "models": 5_000,
        "submission": 0,
        "dvc cache": 0,
        "checkpoints": 0,
        "other": 0,
    }
    outs = {"data/raw": 1_000_000, "data/processed": 101_000, "models/members/gru/model.pt": 5_000}
    linked = dict.fromkeys(outs, 0)

    def measured(copied: dict[str, int]) -> dict:
        parts = stages | {"dvc cache": sum(copied.values())}
        return {"parts": parts, "cache_by_output": copied, "output_bytes": outs}

    def cache_type(added: dict[str, int], relinked: dict[str, int]) -> dict:
        return measured(added) | {"relinked": measured(relinked)}

    types = {
        "copy": cache_type(outs, outs),
        "reflink,hardlink": cache_type(outs | {"models/members/gru/model.pt": 0}, linked),
    }
    disk = {"stages": stages, "preprocess_peak": {"bytes": 150_000}, "types": types}
    result = {"drawings": 1_000, "test_rows": 10, "disk": disk}
    rows = {r["item"]: r for r in project_disk.project_disk(result, zip_ratio=0.3)}
    csv_full = 1_000 * project_disk.KAGGLE_TRAIN
    store_full = 100 * (project_disk.KAGGLE_TRAIN + project_disk.KAGGLE_TEST)
    assert rows["train CSV (data/raw)"]["bytes"] == csv_full
    assert rows["store (data/processed)"]["bytes"] == store_full
    assert rows["train_simplified.zip (data/cache)"]["bytes"] == pytest.approx(0.3 * csv_full)
    copy, repro = "cache.type copy, after dvc repro", "cache.type reflink,hardlink, after dvc repro"
    relinked = "cache.type reflink,hardlink, after dvc checkout --relink"
    assert rows[f"DVC cache, {copy}"]["bytes"] == csv_full + store_full + 5_000
    assert rows[f"DVC cache, {repro}"]["bytes"] == csv_full + store_full  # the model is linked
    assert rows[f"DVC cache, {relinked}"]["bytes"] == 0
    once = (csv_full + store_full + 5_000) / csv_full
    assert rows[f"total, {copy}"]["ratio"] == pytest.approx(2 * once, abs=1e-3)
    assert "missed" in rows[f"total, {copy}"]["basis"]
    assert rows[f"total, {relinked}"]["ratio"] == pytest.approx(once, abs=1e-3)
    assert "met" in rows[f"total, {relinked}"]["basis"]
    peak = rows["peak while preprocess runs, cache.type reflink,hardlink"]["bytes"]
    assert peak == pytest.approx(0.3 * csv_full + 2 * csv_full + 150 * project_disk.KAGGLE_TRAIN)


def test_dvc_cache_copies_or_links_by_cache_type(tmp_path: Path) -> None:
    """The real `dvc add` and `dvc checkout --relink`: copy keeps two copies; with reflink
    first (and no reflinks on the file system) the commit copies a folder output and links a
    file output, and the relink links both; with hardlink first the commit links."""
    run_dir = tmp_path / "run"
    raw = run_dir / "data" / "raw" / "train_simplified"
    raw.mkdir(parents=True)
    (raw / "cat.csv").write_bytes(os.urandom(200_000))
    (run_dir / "models" / "members" / "gru").mkdir(parents=True)
    (run_dir / "models" / "members" / "gru" / "model.pt").write_bytes(os.urandom(30_000))
    types = ["copy", "reflink,hardlink,copy", "hardlink,copy"]
    figures = dvccache.measure_cache(run_dir, tmp_path / "logs", types, ["gru"])
    assert figures["outs"] == ["data/raw", "models/members/gru/model.pt"]
    copy, reflink, hardlink = (figures["types"][t] for t in types)
    assert copy["cache_by_output"]["data/raw"] == copy["output_bytes"]["data/raw"] >= 200_000
    assert copy["parts"]["dvc cache"] >= 230_000
    both = {"data/raw": 1.0, "models": 1.0}
    assert project_disk.cache_shares(copy) == project_disk.cache_shares(copy["relinked"]) == both
    if reflink["fs_used_grew"] > 100_000:  # no reflinks here (st_blocks cannot see a clone)
        assert project_disk.cache_shares(reflink) == {"data/raw": 1.0, "models": 0.0}
        assert project_disk.cache_shares(reflink["relinked"]) == {"data/raw": 0.0, "models": 0.0}
    for measured in (hardlink, hardlink["relinked"]):
        assert measured["cache_by_output"] == {"data/raw": 0, "models/members/gru/model.pt": 0}
        assert measured["parts"]["dvc cache"] < 100_000  # the cache's folders and the manifest
