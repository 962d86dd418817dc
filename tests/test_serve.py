"""`python -m pipeline.serve` over real HTTP on 127.0.0.1: answers equal the one inference path,
requests that arrive together are batched, every bad request gets a 4xx `{"error": ...}` (never
a 500, the server keeps serving), and the command's own errors are one `error:` line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings, cap_points
from pipeline.core.simplify import simplify_strokes
from pipeline.models.predictor import Predictor
from tests.conftest import CLASSES, REPO_DIR, make_ensemble, make_labelled_store, random_drawings
from tests.serve_helpers import Server, running_server, serving_root

DIGESTS = {"train": "a1b2c3", "val": "d4e5f6"}


def add_data_digests(path: Path, digests: dict[str, str]) -> None:
    """What the trainer records in a checkpoint's meta: the digests of its data."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["data"] = digests
    torch.save(ckpt, path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Paths]]:
    """A server on a two-member ensemble (a GRU and a CNN, untrained, a fitted `weights` blend)."""
    paths = serving_root(tmp_path_factory.mktemp("serve"))
    make_labelled_store(paths.store_path)
    make_ensemble(paths, ("gru", "cnn"), method="weights", fit_split="val")
    for name in ("gru", "cnn"):
        add_data_digests(paths.for_member(name).model_path, DIGESTS)
    with running_server(paths.store_path.parents[2]) as server:
        yield server, paths


@pytest.fixture(scope="module")
def predictor(served: tuple[Server, Paths]) -> Predictor:
    return Predictor.load(served[1])


def reference(predictor: Predictor, strokes: list) -> np.ndarray:
    """The blend's (C,) probabilities of one drawing as the store would hold it (capped at the
    params' 256 points), by the predict stage's code."""
    capped, _ = cap_points(Drawings.from_strokes([strokes]), 256)
    return predictor.predict(capped, 64).blend[0]


def as_vector(guesses: list[dict]) -> np.ndarray:
    """Guesses over every class back to a (C,) vector in class order."""
    p = np.full(len(CLASSES), np.nan)
    for g in guesses:
        p[CLASSES.index(g["word"])] = g["p"]
    return p


# ---------------------------------------------------------------- answers


def test_health_names_the_classes_members_blend_and_data(served: tuple[Server, Paths]) -> None:
    server, _ = served
    status, health = server.get("/api/health")
    assert status == 200
    assert health["classes"] == CLASSES
    assert health["members"] == ["gru", "cnn"]
    assert health["blend"] == "weights"
    assert health["data"] == DIGESTS
    assert health["max_points"] == 256
    assert health["limits"] == {
        "max_request_points": 10_000,
        "max_path_px": 50_000,
        "max_body_bytes": 1 << 20,
    }


def test_a_kaggle_drawing_gets_the_predict_stages_probabilities(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    server, _ = served
    rng = np.random.default_rng(1)
    for strokes in random_drawings(rng, 8):
        drawing = [[xs, ys] for xs, ys in strokes]
        status, answer = server.post({"drawing": drawing, "top": len(CLASSES)})
        assert status == 200, answer
        np.testing.assert_allclose(
            as_vector(answer["top"]), reference(predictor, strokes), atol=1e-6
        )
        assert answer["drawing"] == drawing  # used as is
        assert set(answer["members"]) == {"gru", "cnn"}
        assert answer["ms"] > 0


def test_the_answer_is_the_best_three_by_default_best_first(served: tuple[Server, Paths]) -> None:
    server, _ = served
    status, answer = server.post({"drawing": [[[0, 100, 255], [0, 200, 30]]]})
    assert status == 200
    for guesses in [answer["top"], *answer["members"].values()]:
        assert len(guesses) == 3
        ps = [g["p"] for g in guesses]
        assert ps == sorted(ps, reverse=True) and all(0 <= p <= 1 for p in ps)
        assert all(g["word"] in CLASSES for g in guesses)
    status, answer = server.post({"drawing": [[[0, 100], [0, 200]]], "top": 1000})
    assert status == 200 and len(answer["top"]) == len(CLASSES)  # at most every class
    assert sum(g["p"] for g in answer["top"]) == pytest.approx(1, abs=1e-5)


def test_raw_strokes_are_simplified_like_the_dataset(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    server, _ = served
    t = np.linspace(0, 2 * np.pi, 400)
    circle = [(1000 + 300 * np.cos(t)).tolist(), (-50 + 300 * np.sin(t)).tolist()]
    line = [[700.0, 1300.0], [400.0, 400.0], [0.0, 120.0]]  # with times, which are unused
    payload = {"strokes": [[*circle, (t * 100).tolist()], line], "top": len(CLASSES)}
    status, answer = server.post(payload)
    assert status == 200, answer
    expected = simplify_strokes([(circle[0], circle[1]), (line[0], line[1])])
    assert answer["drawing"] == [[xs, ys] for xs, ys in expected]
    assert 10 < len(answer["drawing"][0][0]) < 60  # a circle of a few dozen points
    # y spans -350 (the circle's top) to 400 (the line): 750 px become 255, so the line's
    # 600 px are 204, and it lies at the bottom.
    assert answer["drawing"][1] == [[0, 204], [255, 255]]
    np.testing.assert_allclose(as_vector(answer["top"]), reference(predictor, expected), atol=1e-6)


def test_a_long_drawing_is_capped_as_the_store_caps_it(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    server, _ = served
    xs = (np.arange(600) * 7 % 256).tolist()
    ys = (np.arange(600) * 3 % 256).tolist()
    status, answer = server.post({"drawing": [[xs, ys]], "top": len(CLASSES)})
    assert status == 200
    capped, n = cap_points(Drawings.from_strokes([[(xs, ys)]]), 256)
    assert n == 1 and answer["drawing"] == [[list(a), list(b)] for a, b in capped.strokes(0)]
    np.testing.assert_allclose(
        as_vector(answer["top"]), reference(predictor, [(xs, ys)]), atol=1e-6
    )


def test_requests_that_arrive_together_share_forward_passes(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    server, _ = served
    drawings = random_drawings(np.random.default_rng(2), 64)
    before = server.get("/api/health")[1]["served"]

    def ask(strokes: list) -> np.ndarray:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        body = json.dumps({"drawing": [[xs, ys] for xs, ys in strokes], "top": len(CLASSES)})
        conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        conn.close()
        return as_vector(answer["top"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, drawings))
    after = server.get("/api/health")[1]["served"]
    drawn = after["drawings"] - before["drawings"]
    passes = after["passes"] - before["passes"]
    assert drawn == 64 and passes < 64  # some passes carried several drawings
    expected = predictor.predict(
        cap_points(Drawings.from_strokes(drawings), 256)[0], 64
    ).blend  # all at once, as the predict stage batches them
    np.testing.assert_allclose(np.array(answers), expected, atol=1e-5)


def forward_workers(pid: int) -> list[int]:
    """The server's worker processes (its children started by multiprocessing's spawn)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def is_dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_worker_that_dies_is_replaced(served: tuple[Server, Paths], predictor: Predictor) -> None:
    server, _ = served
    workers = forward_workers(server.process.pid)
    assert len(workers) == 2  # the default --workers 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not is_dead(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)  # dead while idle
    strokes = random_drawings(np.random.default_rng(3), 1)[0]
    for _ in range(6):  # whichever worker each request gets
        status, answer = server.post({"drawing": [[x, y] for x, y in strokes], "top": 6})
        assert status == 200, answer
        np.testing.assert_allclose(
            as_vector(answer["top"]), reference(predictor, strokes), atol=1e-6
        )
    assert len(forward_workers(server.process.pid)) == 2


def test_a_worker_killed_mid_batch_is_replaced_and_the_batch_answered(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    from pipeline.serve.workers import ForwardPool

    _, paths = served
    pool = ForwardPool(paths, max_points=256, n=1, threads=1)
    pool.start()
    try:
        (worker,) = pool._all
        rows = random_drawings(np.random.default_rng(5), 6_000)
        big, _ = cap_points(Drawings.from_strokes(rows), 256)
        with ThreadPoolExecutor(1) as executor:
            pending = executor.submit(pool.predict, big)  # seconds of work for the worker
            time.sleep(0.5)
            assert not pending.done()
            os.kill(worker.pid, signal.SIGKILL)
            answer = pending.result(timeout=300)  # from the replacement
        assert worker not in pool._all and len(pool._all) == 1
        for k in (0, 5_999):
            np.testing.assert_allclose(answer.blend[k], reference(predictor, rows[k]), atol=1e-5)
    finally:
        pool.close()


def test_forward_passes_can_run_in_the_server_process(
    served: tuple[Server, Paths], predictor: Predictor
) -> None:
    _, paths = served
    strokes = random_drawings(np.random.default_rng(4), 1)[0]
    with running_server(paths.store_path.parents[2], "--workers", "0") as server:
        assert forward_workers(server.process.pid) == []
        status, answer = server.post({"drawing": [[x, y] for x, y in strokes], "top": 6})
    assert status == 200
    np.testing.assert_allclose(as_vector(answer["top"]), reference(predictor, strokes), atol=1e-6)


def test_the_page_and_its_files_are_served_from_the_package(served: tuple[Server, Paths]) -> None:
    server, _ = served
    status, html, kind = server.request("GET", "/")
    assert status == 200 and kind.startswith("text/html")
    page = html.decode()
    assert '<canvas id="pad"' in page and "/static/play.js" in page
    for name, kind_prefix in [("play.js", "text/javascript"), ("play.css", "text/css")]:
        status, body, kind = server.request("GET", f"/static/{name}")
        assert status == 200 and kind.startswith(kind_prefix)
        assert b"http://" not in body and b"https://" not in body  # nothing from a CDN
    assert "https://" not in page and "http://" not in page
    status, body, _ = server.request("GET", "/static/../__main__.py")
    assert status == 404


# ---------------------------------------------------------------- bad requests

TOO_MANY = [[list(range(256)) * 40, list(range(256)) * 40]]  # 10,240 points
ZIGZAG = [[[0, 255] * 300, [0, 1] * 300]]  # 600 points, 150,000 px long at 255 px wide

BAD = [
    # (body bytes, content type, status, words the error names)
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"drawing": [[[1, 2], [3, 4]]]', "application/json", 400, "not valid JSON"),
    (b'{"drawing": [[[1, 2], [3, 4]]]}', "text/plain", 415, "Content-Type: application/json"),
    (b"", "application/json", 422, "body is empty"),
    (b"[1, 2, 3]", "application/json", 422, "valid dictionary"),
    (b"{}", "application/json", 422, "exactly one"),
    (b'{"drawing": [[[1], [2]]], "strokes": [[[1], [2]]]}', "application/json", 422, "exactly one"),
    (b'{"drawing": [[[1], [2]]], "colour": "red"}', "application/json", 422, "colour"),
    (b'{"drawing": 5}', "application/json", 422, "drawing: Input should be a valid list"),
    (b'{"drawing": []}', "application/json", 422, "needs at least one stroke"),
    (b'{"drawing": [[[], []]]}', "application/json", 422, "drawing[0] has no points"),
    (b'{"drawing": [[[1, 2], [3]]]}', "application/json", 422, "2 x values but 1 y values"),
    (b'{"drawing": [[[1], [2], [3]]]}', "application/json", 422, "drawing[0] has 3 list(s)"),
    (b'{"drawing": [[[1, 256], [3, 4]]]}', "application/json", 422, "drawing[0][0][1]"),
    (b'{"drawing": [[[1, -1], [3, 4]]]}', "application/json", 422, "greater than or equal to 0"),
    (b'{"drawing": [[[1.5], [3]]]}', "application/json", 422, "valid integer"),
    (b'{"drawing": [[["1"], [3]]]}', "application/json", 422, "valid integer"),
    (b'{"drawing": [[[true], [3]]]}', "application/json", 422, "valid integer"),
    (b'{"strokes": [[[1, 2], [3, 4], [0]]]}', "application/json", 422, "2 x values but 1 t"),
    (b'{"strokes": [[[1, 2]]]}', "application/json", 422, "strokes[0] has 1 list(s)"),
    (b'{"strokes": [[[1, "a"], [3, 4]]]}', "application/json", 422, "strokes[0][0][1]"),
    (b'{"strokes": [[[1, NaN], [3, 4]]]}', "application/json", 422, "finite number"),
    (b'{"strokes": [[[1, Infinity], [3, 4]]]}', "application/json", 422, "finite number"),
    (b'{"strokes": [[[1, 1e400], [3, 4]]]}', "application/json", 422, "finite number"),
    (b'{"strokes": [[[1, 1e10], [3, 4]]]}', "application/json", 422, "1000000000"),
    (b'{"strokes": [[[1, null], [3, 4]]]}', "application/json", 422, "valid number"),
    (b'{"drawing": [[[1], [2]]], "top": 0}', "application/json", 422, "top"),
    (b'{"drawing": [[[1], [2]]], "top": "3"}', "application/json", 422, "top"),
    (json.dumps({"drawing": TOO_MANY}).encode(), "application/json", 422, "at most 10,000"),
    (json.dumps({"strokes": ZIGZAG}).encode(), "application/json", 422, "px long"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, ""),
]


@pytest.mark.parametrize(("body", "kind", "status", "words"), BAD, ids=range(len(BAD)))
def test_a_bad_request_gets_a_4xx_naming_the_problem(
    served: tuple[Server, Paths], body: bytes, kind: str, status: int, words: str
) -> None:
    server, _ = served
    got, answer, content_type = server.request("POST", "/api/predict", body, {"Content-Type": kind})
    assert got == status, answer
    assert content_type == "application/json"
    error = json.loads(answer)["error"]
    assert words in error
    assert server.get("/api/health")[0] == 200  # still serving


def test_a_body_over_the_limit_is_refused_before_it_is_read(served: tuple[Server, Paths]) -> None:
    server, _ = served
    huge = b'{"drawing": [[[' + b"1, " * 400_000 + b"1], [1]]]}"  # 1.2 MB
    status, answer, _ = server.request(
        "POST", "/api/predict", huge, {"Content-Type": "application/json"}
    )
    assert status == 413 and "1,048,576 bytes" in json.loads(answer)["error"]
    # Chunked, with no Content-Length: counted while read.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (huge[i : i + 65536] for i in range(0, len(huge), 65536))
    conn.request(
        "POST",
        "/api/predict",
        chunks,
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413 and "error" in json.loads(response.read())
    conn.close()
    assert server.get("/api/health")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nothing-here", 404), ("DELETE", "/api/predict", 405), ("GET", "/api/predict", 405)],
)
def test_unknown_paths_and_methods_answer_json(
    served: tuple[Server, Paths], method: str, path: str, status: int
) -> None:
    server, _ = served
    got, body, kind = server.request(method, path)
    assert got == status and kind == "application/json"
    assert "/api/predict" in json.loads(body)["error"]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["drawing", "strokes", "top", "x"]), inner, max_size=3)
    ),
    max_leaves=30,
)
numbers = st.integers(-300, 300) | st.floats(allow_nan=True, allow_infinity=True)
shaped = st.lists(st.lists(st.lists(numbers, max_size=4), max_size=4), max_size=3)
requests = (
    json_values.map(lambda v: json.dumps(v).encode())
    | st.tuples(st.sampled_from(["drawing", "strokes"]), shaped, st.none() | json_scalars).map(
        lambda v: json.dumps({v[0]: v[1]} | ({} if v[2] is None else {"top": v[2]})).encode()
    )
    | st.binary(max_size=64)
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=requests)
def test_random_json_never_gets_a_500(served: tuple[Server, Paths], body: bytes) -> None:
    server, _ = served
    status, answer, kind = server.request(
        "POST", "/api/predict", body, {"Content-Type": "application/json"}
    )
    assert status < 500, answer
    decoded = json.loads(answer)
    assert kind == "application/json"
    assert (status == 200) == ("top" in decoded) and (status >= 400) == ("error" in decoded)


def test_the_fuzzing_left_no_trace_of_a_bug(served: tuple[Server, Paths]) -> None:
    server, _ = served
    assert server.get("/api/health")[0] == 200
    log = server.log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


# ---------------------------------------------------------------- the command


def serve_command(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.serve", *args],
        cwd=root,
        env={"PYTHONPATH": str(REPO_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_trained_models_one_error_line_says_make_repro(tmp_path: Path) -> None:
    serving_root(tmp_path)
    done = serve_command(tmp_path, "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "make repro" in lines[0], lines
    assert "models/blend.npz" in lines[0]


def test_a_member_missing_is_one_error_line_too(tmp_path: Path) -> None:
    paths = serving_root(tmp_path)
    make_ensemble(paths, ("gru", "bilstm"), method="mean")
    paths.for_member("bilstm").model_path.unlink()
    done = serve_command(tmp_path, "--port", "0")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert "bilstm" in lines[0] and "make repro" in lines[0]


def test_a_port_in_use_is_one_error_line(served: tuple[Server, Paths]) -> None:
    server, paths = served
    root = paths.store_path.parents[2]
    done = serve_command(root, "--port", str(server.port))  # the fixture's server holds it
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines == [
        f"error: port {server.port} is in use; pass another with --port"
    ]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    serving_root(tmp_path)
    done = serve_command(tmp_path, "--port", "70000")
    assert done.returncode == 2 and done.stderr.startswith("error: --port 70000")
