"""One inference path, checked on real drawings: for every kaggle16 test drawing, the answer of
`POST /api/predict` to its Kaggle-format row equals the predict stage's blend probabilities
(before prior correction) for that drawing, to 1e-5: the default three members (untrained, as
complete checkpoints) and a `weights` blend fitted on the val split."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.predictor import Predictor
from tests.conftest import make_ensemble
from tests.serve_helpers import (
    kaggle16_store,
    kaggle16_test_rows,
    running_server,
    serving_root,
    usable,
)


@pytest.mark.slow
def test_every_kaggle16_test_drawing_gets_the_predict_stages_probabilities(
    tmp_path: Path, kaggle16_dir: Path
) -> None:
    paths = serving_root(tmp_path)
    store = kaggle16_store(kaggle16_dir, paths)
    classes = store.classes
    make_ensemble(paths, ("gru", "bilstm", "cnn"), "weights", "val", classes)
    test = store.split("test").read()
    rows = usable(test)
    expected = Predictor.load(paths, classes).predict(test.take(rows), 512).blend  # (N, C)
    drawings = kaggle16_test_rows(kaggle16_dir)
    assert len(drawings) == len(test) == 1600 and len(rows) == 1600

    with running_server(tmp_path) as server:

        def ask(i: int) -> np.ndarray:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            body = json.dumps({"drawing": drawings[i], "top": len(classes)})
            conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            conn.close()
            assert response.status == 200, answer
            p = np.full(len(classes), np.nan)
            for guess in answer["top"]:
                p[classes.index(guess["word"])] = guess["p"]
            return p

        with ThreadPoolExecutor(8) as pool:  # concurrent: batched with each other
            answers = np.array(list(pool.map(ask, rows.tolist())))
        served = server.get("/api/health")[1]["served"]
    assert served["drawings"] == 1600 and served["passes"] < 1600
    np.testing.assert_allclose(answers, expected, rtol=0, atol=1e-5)
