"""Serving speed: latency and throughput of `POST /api/predict` for the default three members.

    python -m benchmarks serve                                  # via `make bench`
    python -m benchmarks.bench_serve --work /tmp/serve-bench    # keep the models; reused next time
    python -m benchmarks.bench_serve --work /tmp/serve-bench --screenshot docs/img/play.png

The real kaggle16 sample goes through the preprocess stage (25 val and 25 blend drawings per
class); the default members (gru, bilstm, cnn, the repo's params) train for `BUDGET_S` seconds
each (60; `BENCH_SERVE_BUDGET_S` overrides) and the blend stage fits their blend. How well they
are trained does not change their speed. Then a real server (`python -m pipeline.serve` as
`make serve` starts it, two forward worker processes; then with its passes in its own process,
`--workers 0`, one and two torch threads) answers the 1,600 kaggle16 test drawings:

- latency, one client on one keep-alive connection, each drawing in Kaggle format (`drawing`)
  and as raw points (`strokes`: the drawing three times larger with times, which the server
  simplifies): p50 and p95 of the server's own `ms` and of the round trip the client sees;
- throughput, 16 clients at once (threads, a connection each), two passes over the drawings:
  drawings/s, and the batches the server formed;
- the predict stage's own rate on the same drawings (`Predictor.predict`, batches of 512, one
  torch thread, as `predict.threads: 1`), for the ratio.

The clients run on the same machine (2 cores here) and take some of its CPU: the figures are
what a laptop serving itself sees, not the server alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.kaggle16 import KAGGLE16_DIR, REPO_DIR, member_config, repo_params
from pipeline.blend import run as fit_blend
from pipeline.common.config import EnsembleConfig, PreprocessConfig, from_dict
from pipeline.common.paths import Paths
from pipeline.core.store import DrawingStore
from pipeline.models.predictor import Predictor
from pipeline.preprocess import run as preprocess
from pipeline.train import run as train

BUDGET_S = float(os.environ.get("BENCH_SERVE_BUDGET_S", "60"))
MEMBERS = ("gru", "bilstm", "cnn")
CLIENTS = 16
# The server as `make serve` starts it (two worker processes, a torch thread each), and its
# forward passes in the server's own process instead (--workers 0) with one and two threads.
SETUPS = {
    "workers2": ("--workers", "2", "--threads", "1"),
    "inprocess_threads1": ("--workers", "0", "--threads", "1"),
    "inprocess_threads2": ("--workers", "0", "--threads", "2"),
}
WARM_UP = 50


def build_ensemble(work: Path, budget_s: float) -> str:
    """The kaggle16 store and the three members and their blend under `work` (kept if there)."""
    paths = Paths.under(work)
    if paths.blend_path.is_file():
        return f"reused from {work}"
    cfg = from_dict(PreprocessConfig, repo_params("preprocess"), "preprocess")
    cfg = dataclasses.replace(cfg, val_per_class=25, blend_per_class=25)
    preprocess(cfg, dataclasses.replace(paths, raw_dir=KAGGLE16_DIR), show_progress=False)
    for name in MEMBERS:
        member = member_config(name, budget_s, val_every_s=30, checkpoint_every_s=0)
        train(member, paths.for_member(name), log_live=False)
    ensemble = repo_params("ensemble") | {"members": list(MEMBERS)}
    fit_blend(from_dict(EnsembleConfig, ensemble, "ensemble"), paths)
    (work / "params.yaml").write_text((REPO_DIR / "params.yaml").read_text())
    return f"trained here, {budget_s:.0f} s each"


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def predict(self, body: bytes) -> tuple[float, float]:
        """(server ms, round trip ms) of one request."""
        start = time.perf_counter()
        self.conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        answer = json.loads(response.read())
        trip = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"the server answered {response.status}: {answer}")
        return answer["ms"], trip

    def health(self) -> dict[str, Any]:
        self.conn.request("GET", "/api/health")
        return json.loads(self.conn.getresponse().read())


def bodies(drawings: list) -> dict[str, list[bytes]]:
    """Each drawing as a Kaggle-format request and as raw points (x3, with times)."""
    kaggle = [json.dumps({"drawing": d}).encode() for d in drawings]
    raw = []
    for d in drawings:
        strokes, t = [], 0
        for xs, ys in d:
            ts = list(range(t, t + 16 * len(xs), 16))
            t = ts[-1] + 200
            strokes.append([[3 * x + 40 for x in xs], [3 * y + 25 for y in ys], ts])
        raw.append(json.dumps({"strokes": strokes}).encode())
    return {"drawing": kaggle, "strokes": raw}


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def latency(port: int, requests: list[bytes]) -> dict[str, float]:
    client = Client(port)
    for body in requests[:WARM_UP]:
        client.predict(body)
    timed = [client.predict(body) for body in requests]
    server_p50, server_p95 = percentiles([s for s, _ in timed])
    trip_p50, trip_p95 = percentiles([t for _, t in timed])
    return {
        "server_ms_p50": round(server_p50, 2),
        "server_ms_p95": round(server_p95, 2),
        "round_trip_ms_p50": round(trip_p50, 2),
        "round_trip_ms_p95": round(trip_p95, 2),
    }


def throughput(port: int, requests: list[bytes], passes: int = 2) -> dict[str, float]:
    """Drawings/s with CLIENTS at once, each taking every CLIENTS-th request."""
    work = requests * passes
    before = Client(port).health()["served"]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            c = Client(port)
            for body in work[k::CLIENTS]:
                c.predict(body)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    after = Client(port).health()["served"]
    passes_run = after["passes"] - before["passes"]
    return {
        "drawings_per_s": round(len(work) / seconds, 1),
        "mean_batch": round((after["drawings"] - before["drawings"]) / max(passes_run, 1), 1),
    }


def predict_stage_rate(work: Path) -> float:
    """The predict stage's drawings/s on the store's test split (one torch thread)."""
    paths = Paths.under(work)
    store = DrawingStore(paths.store_path)
    test = store.split("test").read()
    predictor = Predictor.load(paths, store.classes)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor.predict(test.take(range(256)), 512)  # warm-up
        start = time.perf_counter()
        predictor.predict(test, 512)
        return len(test) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)


def run(work: Path | None = None, screenshot: Path | None = None) -> dict[str, Any]:
    from tests.serve_helpers import kaggle16_test_rows, running_server

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        figures: dict[str, Any] = {
            "members": list(MEMBERS),
            "models": build_ensemble(work, BUDGET_S),
        }
        drawings = kaggle16_test_rows(KAGGLE16_DIR)
        requests = bodies(drawings)
        figures["drawings"] = len(drawings)
        for setup, args in SETUPS.items():
            with running_server(work, *args) as server:
                for form, bodies_ in requests.items():
                    for key, value in latency(server.port, bodies_).items():
                        figures[f"{setup}/{form}/{key}"] = value
                for key, value in throughput(server.port, requests["drawing"]).items():
                    figures[f"{setup}/{CLIENTS}_clients/{key}"] = value
        rate = predict_stage_rate(work)
        figures["predict_stage/drawings_per_s"] = round(rate, 1)
        served = figures[f"workers2/{CLIENTS}_clients/drawings_per_s"]
        figures["served_over_predict_stage"] = round(served / rate, 3)
        for key, value in figures.items():
            print(f"{key:>44}  {value}", flush=True)
        if screenshot is not None:
            with running_server(work) as server:
                take_screenshot(server.url, work, drawings, screenshot)
    return figures


def take_screenshot(url: str, work: Path, drawings: list, path: Path) -> None:
    """The page mid-drawing in a game round: the test drawing of the round's class the blend is
    surest of, its first two thirds of strokes and half of the next, the mouse button down."""
    from tests.page_driver import chromium_driver, replay, wait, wait_for_answer, wait_until_ready

    paths = Paths.under(work)
    store = DrawingStore(paths.store_path)
    proba = Predictor.load(paths, store.classes).predict(store.split("test").read(), 512).blend
    with chromium_driver(work / "profile") as driver:
        driver.set_window_size(1280, 900)
        driver.get(url)
        wait_until_ready(driver)
        driver.find_element("id", "new-round").click()
        target = wait(driver, "document.getElementById('target')?.textContent")
        c = store.classes.index(target)
        k = int(np.argmax(np.where(proba.argmax(1) == c, proba[:, c], -1)))
        drawing = drawings[k]
        done = max(1, 2 * len(drawing) // 3)
        held = len(drawing[done][0]) // 2 + 1 if done < len(drawing) else 0
        replay(driver, drawing, strokes=done, hold_points=held)
        wait_for_answer(driver)
        time.sleep(1.5)  # the clock runs a little
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    print(f"screenshot of a round drawing '{target}' -> {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep (or reuse) the store and models here")
    parser.add_argument("--screenshot", type=Path, help="also save the page mid-drawing here")
    args = parser.parse_args()
    run(args.work, args.screenshot)
