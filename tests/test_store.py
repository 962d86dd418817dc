"""The ragged store: what goes in comes back, by range and by block, across chunk boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.common.errors import PipelineError
from pipeline.core import store
from pipeline.core.drawings import Drawings
from pipeline.core.store import (
    DrawingStore,
    SplitWriter,
    create_store,
    pack_country,
    unpack_country,
)
from tests.conftest import labelled_random_drawings


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks and flushes so a small test crosses every boundary the writer handles.
    monkeypatch.setattr(store, "POINT_CHUNK", 64)
    monkeypatch.setattr(store, "DRAWING_CHUNK", 16)  # two blocks of 8 per chunk


def test_split_round_trip_across_chunks_and_appends(tmp_path: Path, small_chunks: None) -> None:
    rng = np.random.default_rng(0)
    parts = [labelled_random_drawings(rng, n) for n in (5, 40, 1, 33, 0, 17)]
    root = create_store(
        tmp_path / "s.zarr", ["a", "b", "c", "d", "e"], {"counts": {}, "params": {}}
    )
    writer = SplitWriter(root, "train", block_size=8)
    for p in parts:
        us = pack_country(["US"] * len(p))
        writer.append(p.with_columns(country=us, recognized=np.ones(len(p), np.int8)))
    writer.close()

    expected = Drawings.concat(parts)
    split = DrawingStore(tmp_path / "s.zarr").split("train")
    got = split.read()
    np.testing.assert_array_equal(got.points, expected.points)
    np.testing.assert_array_equal(got.offsets, expected.offsets)
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_array_equal(got.key_ids, expected.key_ids)
    assert split.block_size == 8 and split.group["label"].chunks == (16,)
    assert split.n_blocks == -(-len(expected) // 8)
    blocks = Drawings.concat([split.block(b) for b in range(split.n_blocks)])
    np.testing.assert_array_equal(blocks.points, expected.points)
    assert unpack_country(split.column("country")) == ["US"] * len(expected)
    assert split.group.attrs["n"] == len(expected)


def test_pack_country_keeps_two_ascii_letters_only() -> None:
    codes = ["US", "", "USA", "É1", "gb", "U"]
    packed = pack_country(codes)
    assert unpack_country(packed) == ["US", "", "", "", "gb", ""]


def test_opening_a_missing_or_foreign_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="dvc repro preprocess"):
        DrawingStore(tmp_path / "nothing.zarr")
    root = create_store(tmp_path / "old.zarr", ["a"], {})
    root.attrs["format_version"] = 0
    with pytest.raises(PipelineError, match="format"):
        DrawingStore(tmp_path / "old.zarr")
