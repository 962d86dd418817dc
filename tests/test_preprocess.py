"""The preprocess stage: CSV -> store -> the same strokes, class-balanced blocks, balanced and
deterministic val and blend splits, every bad row rejected with its reason, no test row lost."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.common.config import PreprocessConfig
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.store import DrawingStore, unpack_country
from pipeline.ingest.interleave import interleave_order, interleave_windows
from pipeline.preprocess import main, run
from tests.conftest import write_params

CFG = PreprocessConfig(
    max_per_class=0,
    val_per_class=10,
    blend_per_class=10,
    recognized_only=False,
    max_points=256,
    block_size=64,
    workers=1,
    seed=0,
)
HELD_OUT = ("train", "val", "blend")  # the labelled splits, every kept drawing in one of them
TRAIN_HEADER = ["countrycode", "drawing", "key_id", "recognized", "timestamp", "word"]
GOOD = json.dumps([[[0, 10, 20], [5, 15, 25]], [[30], [40]]])


def preprocess(raw_dir: Path, out: Path, cfg: PreprocessConfig = CFG) -> tuple[dict, DrawingStore]:
    paths = dataclasses.replace(Paths.under(out), raw_dir=raw_dir)
    metrics = run(cfg, paths, show_progress=False)
    return metrics, DrawingStore(paths.store_path)


def write_raw(raw_dir: Path, classes: dict[str, list[list[str]]], test: list[list[str]]) -> Path:
    """Kaggle layout from rows; train rows are (countrycode, drawing, key_id, recognized, word)."""
    (raw_dir / "train_simplified").mkdir(parents=True)
    for word, rows in classes.items():
        with open(raw_dir / "train_simplified" / f"{word}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(TRAIN_HEADER)
            w.writerows(
                [[c, d, k, r, "2017-03-23 12:59:36.68729", word_] for c, d, k, r, word_ in rows]
            )
    with open(raw_dir / "test_simplified.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["key_id", "countrycode", "drawing"])
        w.writerows(test)
    return raw_dir


def good_rows(word: str, n: int, first_key: int) -> list[list[str]]:
    return [["US", GOOD, str(first_key + i), "True", word] for i in range(n)]


@pytest.fixture(scope="module")
def kaggle16_store(kaggle16_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("k16")
    return preprocess(kaggle16_dir, out)


def test_round_trip_gives_back_the_csv_strokes_exactly(kaggle16_dir: Path, kaggle16_store) -> None:
    metrics, store = kaggle16_store
    assert sum(metrics[f"{s}/drawings"] for s in HELD_OUT) == 10_000 == metrics["train/rows_read"]
    by_key = {}
    for split in map(store.split, HELD_OUT):
        d, country = split.read(), unpack_country(split.column("country"))
        by_key.update({int(k): (d, i, country[i]) for i, k in enumerate(d.key_ids)})
    for path in sorted((kaggle16_dir / "train_simplified").glob("*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                d, i, country = by_key[int(row["key_id"])]
                strokes = [(list(x), list(y)) for x, y in json.loads(row["drawing"])]
                if sum(len(x) for x, _ in strokes) <= CFG.max_points:
                    assert d.strokes(i) == strokes
                assert store.classes[d.labels[i]] == row["word"]
                assert country == row["countrycode"]


def test_classes_are_the_sorted_file_stems_with_spaces(kaggle16_dir: Path, kaggle16_store) -> None:
    _, store = kaggle16_store
    stems = sorted(p.stem for p in (kaggle16_dir / "train_simplified").glob("*.csv"))
    assert store.classes == stems and len(stems) == 16 and "paint can" in stems
    assert store.attrs["params"] == dataclasses.asdict(CFG)


def test_every_train_block_holds_each_class_in_proportion(kaggle16_store) -> None:
    _, store = kaggle16_store
    labels = store.split("train").labels
    share = np.bincount(labels) / len(labels)
    # A drawing's position is N * key +- C/2 (C classes tie-breaking), so any 64-window holds
    # class c within 1 + share_c * C of 64 * share_c; and every class, rare ones included.
    for start in range(0, len(labels) - 64, 37):
        counts = np.bincount(labels[start : start + 64], minlength=len(share))
        assert (np.abs(counts - 64 * share) <= 1 + share * len(share)).all(), start
        assert (counts > 0).all(), start


MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """The splitmix64 finaliser (Steele, Lea and Flood 2014) on Python ints, mod 2**64."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_the_reference_hash_is_splitmix64() -> None:
    # The first outputs of a SplitMix64 generator seeded with 0, as published with the algorithm.
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def val_keys(keys: list[int], n_val: int, seed: int, skip: int = 0) -> set[int]:
    """The n_val key_ids with the smallest splitmix64(key_id ^ splitmix64(seed)), after the
    `skip` smallest."""
    mix = splitmix64(seed)
    return set(sorted(keys, key=lambda k: splitmix64((k & MASK64) ^ mix))[skip : skip + n_val])


def test_val_split_is_balanced_and_chosen_by_key_hash(kaggle16_store) -> None:
    _, store = kaggle16_store
    val, train, blend = store.split("val"), store.split("train"), store.split("blend")
    assert np.bincount(val.labels).tolist() == [10] * 16
    assert not set(val.key_ids.tolist()) & set(train.key_ids.tolist())
    # For each class, the val key_ids are the 10 of that class with the smallest hash.
    for c in range(16):
        keys = [k for s in (train, val, blend) for k in s.key_ids[s.labels == c].tolist()]
        assert val_keys(keys, 10, CFG.seed) == set(val.key_ids[val.labels == c].tolist()), c


def test_blend_split_is_balanced_disjoint_and_the_next_hashes(kaggle16_store) -> None:
    # The blend stage fits on drawings no member trained on or chose its checkpoint by.
    metrics, store = kaggle16_store
    train, val, blend = (store.split(s) for s in HELD_OUT)
    assert np.bincount(blend.labels, minlength=16).tolist() == [10] * 16
    assert metrics["blend/drawings"] == len(blend) == 160
    assert store.attrs["counts"]["blend"] == dict.fromkeys(store.classes, 10)
    blend_keys = set(blend.key_ids.tolist())
    assert len(blend_keys) == 160
    assert not blend_keys & set(val.key_ids.tolist())
    assert not blend_keys & set(train.key_ids.tolist())
    # For each class, the blend key_ids are the 10 after val's 10 in the hash order.
    for c in range(16):
        keys = [k for s in (train, val, blend) for k in s.key_ids[s.labels == c].tolist()]
        got = set(blend.key_ids[blend.labels == c].tolist())
        assert val_keys(keys, 10, CFG.seed, skip=10) == got, c


def test_val_does_not_change_with_blend_per_class(tmp_path: Path) -> None:
    # Growing (or dropping) the blend split takes drawings from train, never from val: each
    # member's checkpoint choice stays comparable across blend sizes.
    rng = np.random.default_rng(3)
    classes = {
        w: [["US", GOOD, str(k), "True", w] for k in rng.choice(10**12, 100, replace=False)]
        for w in ("cat", "dog", "eye")
    }
    raw = write_raw(tmp_path / "raw", classes, [["1", "US", GOOD]])
    stores = {
        n: preprocess(
            raw,
            tmp_path / f"blend{n}",
            dataclasses.replace(CFG, val_per_class=8, blend_per_class=n),
        )[1]
        for n in (0, 5, 12)
    }
    for n, store in stores.items():
        val, train, blend = store.split("val"), store.split("train"), store.split("blend")
        assert len(blend) == 3 * n and np.bincount(blend.labels, minlength=3).tolist() == [n] * 3
        assert len(val) + len(train) + len(blend) == 300
        for name in ("points", "offsets", "label", "key_id"):
            np.testing.assert_array_equal(
                val.group[name][:],
                stores[0].split("val").group[name][:],
                err_msg=f"blend_per_class={n}: val/{name}",
            )
    # The drawings a bigger blend split adds all come from train.
    small, big = (set(stores[n].split("blend").key_ids.tolist()) for n in (5, 12))
    assert small < big
    assert big - small <= set(stores[5].split("train").key_ids.tolist())


def test_a_small_class_gives_at_most_a_fifth_to_val_and_to_blend(tmp_path: Path) -> None:
    rows = {"cat": good_rows("cat", 30, 100), "dog": good_rows("dog", 200, 500)}
    raw = write_raw(tmp_path / "raw", rows, [["1", "US", GOOD]])
    cfg = dataclasses.replace(CFG, val_per_class=10, blend_per_class=20)
    metrics, store = preprocess(raw, tmp_path, cfg)
    counts = store.attrs["counts"]
    assert counts["val"] == {"cat": 6, "dog": 10}  # a fifth of 30 is 6
    assert counts["blend"] == {"cat": 6, "dog": 20}
    assert counts["train"] == {"cat": 18, "dog": 170}
    assert metrics["val/short_classes"] == 1


def test_test_rows_keep_file_order_and_solution_labels(kaggle16_dir: Path, kaggle16_store) -> None:
    _, store = kaggle16_store
    test = store.split("test")
    with open(kaggle16_dir / "test_simplified.csv", newline="") as f:
        keys = [int(r["key_id"]) for r in csv.DictReader(f)]
    with open(kaggle16_dir / "test_solution.csv", newline="") as f:
        words = {int(r["key_id"]): r["word"] for r in csv.DictReader(f)}
    assert test.key_ids.tolist() == keys and test.valid.all()
    got = [store.classes[i].replace(" ", "_") for i in test.labels]
    assert got == [words[k] for k in keys]


def test_interleaving_keys_merge_every_class_in_order() -> None:
    counts = np.array([7, 1, 30, 12])
    windows = list(interleave_windows(counts, 5))
    np.testing.assert_array_equal(np.sum(windows, axis=0), counts)  # each drawing exactly once
    first, labels = np.zeros(4, np.int64), []
    for take in windows:
        order = interleave_order(first, take, counts)
        labels.extend(np.repeat(np.arange(4), take)[order].tolist())
        first += take
    # Globally sorted by (j + 0.5) / n_c: recompute from scratch and compare.
    keys = sorted(((j + 0.5) / n, c) for c, n in enumerate(counts) for j in range(n))
    assert labels == [c for _, c in keys]


def test_same_params_give_an_identical_store(
    tmp_path: Path, kaggle16_dir: Path, kaggle16_store
) -> None:
    _, first = kaggle16_store
    cfg = dataclasses.replace(CFG)
    _, second = preprocess(kaggle16_dir, tmp_path, cfg)
    assert_same_store(first, second)


@pytest.mark.slow
def test_worker_processes_give_the_same_store(
    tmp_path: Path, kaggle16_dir: Path, kaggle16_store
) -> None:
    _, first = kaggle16_store
    _, second = preprocess(kaggle16_dir, tmp_path, dataclasses.replace(CFG, workers=2))
    assert_same_store(first, second)


def assert_same_store(a: DrawingStore, b: DrawingStore) -> None:
    # The stored params record `workers`, the one param that must not change the data.
    attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    attrs_a["params"] = {**attrs_a["params"], "workers": None}
    attrs_b["params"] = {**attrs_b["params"], "workers": None}
    assert attrs_a == attrs_b
    for split in (*HELD_OUT, "test"):
        ga, gb = a.root[split], b.root[split]
        assert dict(ga.attrs) == dict(gb.attrs)
        for name in ("points", "offsets", "label", "key_id", "country", "recognized", "valid"):
            np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=f"{split}/{name}")


def test_every_bad_row_kind_is_rejected_with_its_reason(tmp_path: Path) -> None:
    bad = [
        ["US", "[[[1, 2], [3]]]", "9001", "True", "cat"],  # xy_mismatch
        ["US", "[[[1, 2], [3, 300]]]", "9002", "True", "cat"],  # out_of_range
        ["US", "[[[1, 2], [3, 4]]", "9003", "True", "cat"],  # unparseable
        ["US", "[]", "9004", "True", "cat"],  # empty
        ["US", "", "9005", "True", "cat"],  # missing_field (empty drawing)
        ["US", GOOD, "9006", "", "cat"],  # missing_field (empty recognized)
        ["US", GOOD, "9007", "True", "dog"],  # word_mismatch
        ["US", GOOD, "12ab", "True", "cat"],  # bad_key_id
        ["US", GOOD, "99999999999999999999", "True", "cat"],  # bad_key_id: over int64
    ]
    raw = write_raw(
        tmp_path / "raw",
        {"cat": good_rows("cat", 30, 100) + bad, "dog": good_rows("dog", 30, 500)},
        [["1", "US", GOOD]],
    )
    with open(raw / "train_simplified" / "cat.csv", "a") as f:
        f.write("US,too,few\n")  # missing_field (short row)
    metrics, _ = preprocess(raw, tmp_path)
    expected = {
        "xy_mismatch": 1,
        "out_of_range": 1,
        "unparseable": 1,
        "empty": 1,
        "missing_field": 3,
        "word_mismatch": 1,
        "bad_key_id": 2,
    }
    assert {r: metrics[f"rejected/{r}"] for r in expected} == expected
    assert metrics["rejected_rows"] == 10
    assert sum(metrics[f"{s}/drawings"] for s in HELD_OUT) == 60
    with open(tmp_path / "data" / "processed" / "rejects.csv", newline="") as f:
        rejects = list(csv.DictReader(f))
    assert len(rejects) == 10 and {r["file"] for r in rejects} == {"cat.csv"}
    assert [r["line"] for r in rejects][:2] == ["32", "33"]  # header is line 1
    assert {r["key_id"]: r["reason"] for r in rejects}["9007"] == "word_mismatch"


def test_test_rows_are_never_dropped(tmp_path: Path) -> None:
    test = [
        ["11", "US", GOOD],
        ["12", "FR", "[[[1, 2], [3]]]"],
        ["bad", "US", GOOD],
        ["14", "", ""],
        ["15", "DE", GOOD],
        ["16", "US"],
    ]
    raw = write_raw(tmp_path / "raw", {"cat": good_rows("cat", 30, 100)}, test)
    metrics, store = preprocess(raw, tmp_path)
    split = store.split("test")
    assert split.key_ids.tolist() == [11, 12, -1, 14, 15, 16]
    # A key_id that is not a number keeps its drawing (predicted, its text written back).
    assert split.valid.tolist() == [True, False, True, False, True, False]
    assert split.lengths.tolist() == [4, 0, 4, 0, 4, 0]  # unusable rows stored empty
    assert split.group.attrs["key_text"] == {"2": "bad"}
    assert split.labels.tolist() == [-1] * 6  # no test_solution.csv
    assert metrics["test/rows"] == 6 and metrics["test/invalid_rows"] == 3
    assert metrics["test/bad_key_ids"] == 1
    assert metrics["rejected_rows"] == 0  # test problems are flagged, not rejected


def test_recognized_only_and_max_per_class_filter(tmp_path: Path) -> None:
    rows = good_rows("cat", 40, 100)
    for r in rows[::2]:
        r[3] = "False"
    raw = write_raw(
        tmp_path / "raw", {"cat": rows, "dog": good_rows("dog", 40, 500)}, [["1", "US", GOOD]]
    )
    cfg = dataclasses.replace(CFG, recognized_only=True, max_per_class=15, val_per_class=5)
    metrics, store = preprocess(raw, tmp_path, cfg)
    splits = [store.split(s) for s in HELD_OUT]
    assert sum(np.bincount(s.labels, minlength=2) for s in splits).tolist() == [15, 15]
    assert all((s.column("recognized") == 1).all() for s in splits)
    assert metrics["filtered/not_recognized"] == 15  # cat rows read until 15 recognised were kept
    assert metrics["rejected_rows"] == 0


def test_bom_crlf_quoted_newlines_and_column_order_are_read(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "train_simplified").mkdir(parents=True)
    drawing = GOOD.replace(", [[30]", ",\n[[30]")  # a quoted field spanning two lines
    lines = ["word,key_id,drawing,recognized,countrycode,timestamp"]
    lines += [f'cat,{100 + i},"{drawing if i == 3 else GOOD}",True,US,t' for i in range(30)]
    (raw / "train_simplified" / "cat.csv").write_bytes(
        ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()
    )
    (raw / "test_simplified.csv").write_text(f'key_id,countrycode,drawing\n1,US,"{GOOD}"\n')
    metrics, store = preprocess(raw, tmp_path)
    assert metrics["rejected_rows"] == 0
    assert sum(metrics[f"{s}/drawings"] for s in HELD_OUT) == 30
    d = store.split("train").read()
    assert all(d.strokes(i) == [([0, 10, 20], [5, 15, 25]), ([30], [40])] for i in range(len(d)))


def test_a_missing_column_or_input_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="dvc repro download"):
        preprocess(tmp_path / "nothing", tmp_path)
    raw = write_raw(tmp_path / "raw", {"cat": good_rows("cat", 5, 1)}, [["1", "US", GOOD]])
    (raw / "test_simplified.csv").write_text("key_id,drawing\n1,x\n")
    with pytest.raises(PipelineError, match="countrycode"):
        preprocess(raw, tmp_path)


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", {"cat": good_rows("cat", 30, 1)}, [["1", "US", GOOD]])
    preprocess(raw, tmp_path)
    store_path = tmp_path / "data" / "processed" / "drawings.zarr"
    before = zarr.open_group(str(store_path), mode="r").attrs.asdict()
    # A class whose every row is bad fails the run, after pass 1 has written temp files.
    write_raw(
        tmp_path / "raw2",
        {"cat": good_rows("cat", 30, 1), "dog": [["US", "[]", "7", "True", "dog"]]},
        [["1", "US", GOOD]],
    )
    # Named with its file (test_faults_limits.py counts on this test for that).
    with pytest.raises(PipelineError, match=r"'dog' has no usable drawings; check \S*dog\.csv"):
        preprocess(tmp_path / "raw2", tmp_path)
    after = zarr.open_group(str(store_path), mode="r").attrs.asdict()
    assert before == after
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders


def test_stage_cli_writes_outputs_where_dvc_expects_them(workdir: Path, params: dict) -> None:
    write_raw(
        workdir / "data" / "raw",
        {"cat": good_rows("cat", 30, 1), "paint can": good_rows("paint can", 30, 99)},
        [["1", "US", GOOD]],
    )
    params["preprocess"]["workers"] = 1
    write_params(workdir, params)
    main(["--params", "params.yaml"])
    metrics = json.loads((workdir / "metrics" / "preprocess.json").read_text())
    assert sum(metrics[f"{s}/drawings"] for s in HELD_OUT) == 60
    assert metrics["blend/drawings"] == 2 * 6  # tiny params: 10 per class, capped at 30 / 5
    assert (workdir / "data" / "processed" / "rejects.csv").is_file()
    assert DrawingStore(workdir / "data" / "processed" / "drawings.zarr").classes == [
        "cat",
        "paint can",
    ]
