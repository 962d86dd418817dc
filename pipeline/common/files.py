"""Outputs that are never half-written: atomic folders and files, metrics JSON, input checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a temp folder beside `final_dir`; on success it replaces `final_dir` in one rename.

    An interrupted run leaves only a `.tmp-*` folder, which no stage accepts and the next run
    removes, so a half-written output is never mistaken for a complete one.
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in final_dir.parent.glob(f".{final_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final_dir.parent / f".{final_dir.name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()  # not mkdtemp: its 0700 would outlive the rename; this follows the umask
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final_dir.is_symlink() or final_dir.is_file():
        final_dir.unlink()
    elif final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp, final_dir)


@contextlib.contextmanager
def atomic_file(final_path: Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temp file beside `final_path`; it replaces `final_path` only when closed cleanly."""
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_path.parent / f".{final_path.name}.tmp-{secrets.token_hex(6)}"
    try:
        # "x": create exclusively, with the umask's permissions (mkstemp's 0600 would stick)
        with open(tmp, mode.replace("w", "x"), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:  # a full disk says so on write(), without naming the file: name it
        tmp.unlink(missing_ok=True)
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(final_path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final_path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a metrics/metadata JSON atomically (sorted keys, so diffs are stable)."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes (hex, 32 characters): what it holds, whatever its name."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def unreadable_reason(err: BaseException) -> str:
    """Why torch.load refused a file, in one line and without torch's advice to unpickle it."""
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects besides tensors, and unpickling them could run code"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
