"""Builders for the server's tests: a real `python -m pipeline.serve` on 127.0.0.1, a small HTTP
client, and the kaggle16 sample as a store (the predict stage's view of the test drawings)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.config import PreprocessConfig, from_dict
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.core.store import DrawingStore
from pipeline.preprocess import run as preprocess
from tests.conftest import REPO_DIR, tiny_params, write_params

URL_LINE = re.compile(r"at (http://127\.0\.0\.1:(\d+)/)")


@dataclasses.dataclass
class Server:
    """A running server: its base URL and port, and the process (stopped by the context)."""

    url: str
    port: int
    process: subprocess.Popen
    log: Path  # the server's stderr

    def log_text(self) -> str:
        return self.log.read_text()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, bytes, str]:
        """(status, body, content type) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("content-type", "")
        finally:
            conn.close()

    def post(self, payload: Any, path: str = "/api/predict") -> tuple[int, dict]:
        """POST `payload` as JSON; (status, decoded answer)."""
        data = json.dumps(payload).encode()
        status, body, _ = self.request("POST", path, data, {"Content-Type": "application/json"})
        return status, json.loads(body)

    def get(self, path: str) -> tuple[int, dict]:
        status, body, _ = self.request("GET", path)
        return status, json.loads(body)


@contextlib.contextmanager
def running_server(root: Path, *args: str) -> Iterator[Server]:
    """`python -m pipeline.serve --port 0` run in `root` (models/ and params.yaml there), until
    the context ends; its first stdout line names the URL."""
    env = os.environ | {"PYTHONPATH": str(REPO_DIR), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pipeline.serve", "--port", "0", "--threads", "1", *args]
    log = root / "serve.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = URL_LINE.search(line)
        if not found:
            process.kill()
            process.wait()
            raise AssertionError(f"the server did not start: {line}{log.read_text()}")
        yield Server(found.group(1), int(found.group(2)), process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def serving_root(root: Path) -> Paths:
    """A folder laid out like the repo root (params.yaml with the repo's preprocess section)."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, tiny_params())
    return Paths.under(root)


def kaggle16_store(kaggle16_dir: Path, paths: Paths) -> DrawingStore:
    """kaggle16 through the preprocess stage into `paths` (25 val and 25 blend drawings per
    class): the test split is what the predict stage reads."""
    params = tiny_params()["preprocess"] | {"val_per_class": 25, "blend_per_class": 25}
    params |= {"block_size": 4096, "workers": 2, "max_points": 256}
    cfg = from_dict(PreprocessConfig, params, "preprocess")
    preprocess(cfg, dataclasses.replace(paths, raw_dir=kaggle16_dir), show_progress=False)
    return DrawingStore(paths.store_path)


def kaggle16_test_rows(kaggle16_dir: Path) -> list[list[list[list[int]]]]:
    """Every drawing of kaggle16's test_simplified.csv, as its row holds it (file order)."""
    with open(kaggle16_dir / "test_simplified.csv", newline="") as f:
        return [json.loads(row["drawing"]) for row in csv.DictReader(f)]


def usable(test: Drawings) -> np.ndarray:
    """Rows the predict stage predicts (valid, with points), as indices."""
    return np.flatnonzero(test.column("valid") & (test.lengths > 0))
