"""Running the real `dvc` and `git` in a temporary clone: the commands, a clean clone without
`make setup`, waiting for DVC's experiment queue, and checking DVC's cache object by object."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_DIR

BIN = Path(sys.executable).parent  # the venv's: `dvc`, and `python` for the stage commands
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
ENV = os.environ | {"DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}


def dvc(root: Path, *args: str, timeout: float = 600) -> str:
    """Run dvc; its output (stdout, and stderr unless `--json` asks for a document)."""
    done = subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed to load" not in done.stderr, done.stderr  # every metric and plot loads
    return done.stdout if "--json" in args else done.stdout + done.stderr


def python(root: Path, *args: str) -> str:
    """`python ...` in the clone as a user runs it (the venv's python); its stdout."""
    done = subprocess.run(
        [sys.executable, *args], cwd=root, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def commit(root: Path, message: str, *paths: str) -> None:
    """`git add` the paths (everything git does not ignore if none) and commit."""
    subprocess.run([*GIT, "add", *(paths or ["-A"])], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=root, check=True)


def fresh_clone(dst: Path) -> Path:
    """The files git tracks (or would track) in a new git repo: a clone used with DVC
    directly, before (or without) `make setup`: no plots page, no `.dvc/config.local`."""
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
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    commit(dst, "clone")
    return dst


def wait_for_queue(root: Path, timeout: float = 1200) -> str:
    """Poll `dvc queue status` until nothing is queued or running; the last status. (The
    timeout is generous: on a loaded 2-core machine three tiny queued runs took minutes.)"""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(root, "queue", "status")
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(3)


def stop_queue(root: Path) -> None:
    """Stop DVC's queue workers (and kill what they run): a failed test leaves no process."""
    subprocess.run(
        [str(BIN / "dvc"), "queue", "stop", "--kill"],
        cwd=root,
        env=ENV,
        capture_output=True,
        timeout=120,
    )


def corrupt_cache_objects(root: Path) -> list[Path]:
    """Files in DVC's cache whose content no longer has the md5 they are named by (a cache
    object edited through a link would be one)."""
    bad = []
    for path in sorted((root / ".dvc" / "cache" / "files" / "md5").glob("*/*")):
        if path.suffix == ".dir":  # a directory listing: named by its own JSON's md5 too, skip
            continue
        if hashlib.md5(path.read_bytes()).hexdigest() != path.parent.name + path.name:
            bad.append(path)
    return bad


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
