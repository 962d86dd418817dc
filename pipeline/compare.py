"""The experiments side by side, scores first (not a stage): `python -m pipeline.compare`.

`dvc exp show` lists every metric of every stage and every param, well over a hundred columns
led by download throughput. This reads `dvc exp show --json` and prints one row per experiment
(the workspace, each commit, then its experiments best val MAP@3 first): the scores (val, the test
file when its labels are known, the leaderboard after `pipeline.submit`), how long training
took, and only the params that differ between the rows. An experiment that has not finished
well has no scores: its name says `(failed)` (DVC marks it with an error; `dvc queue logs NAME`
says why), `(queued)` or `(running)`, and it is listed last. `make compare` runs it; `--md`
prints a Markdown table.
"""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.config import flatten
from pipeline.common.errors import PipelineError

# (column, metrics file, key): what a Kaggler reads first.
SCORES = (
    ("val/map3", "metrics/evaluate.json", "val/map3"),
    ("val/top1", "metrics/evaluate.json", "val/top1"),
    ("test/map3", "metrics/predict.json", "test/map3"),
    ("leaderboard", "metrics/submit.json", "leaderboard/public_score"),
)
TRAINED = "train s"  # every member's training time (dvclive/<member>/metrics.json), summed


def exp_rows(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten `dvc exp show --json` into {"name", "metrics": {file: {...}}, "params": {...}}:
    each commit, then its experiments, best val MAP@3 first. A failed, queued or running
    experiment has no metrics (DVC shows it with its baseline's) and `(state)` after its name."""
    rows = []
    for commit in shown:
        rev = commit.get("rev", "")
        rows.append(_row(commit, commit.get("name") or (rev if rev == "workspace" else rev[:7])))
        exps = [
            _row(r, f"  {r.get('name') or r.get('rev', '')[:7]}", _state(r, e))
            for e in commit.get("experiments") or []
            for r in e.get("revs") or []
        ]
        rows += sorted(exps, key=_rank)
    return rows


def _state(rev: dict[str, Any], exp: dict[str, Any]) -> str | None:
    """The experiment's state: failed, queued or running; None once it has finished well."""
    state = (exp.get("executor") or {}).get("state")
    if rev.get("error") or state == "failed":
        return "failed"
    return state if state in ("queued", "running") else None


def _row(entry: dict[str, Any], name: str, state: str | None = None) -> dict[str, Any]:
    data = entry.get("data") or {}
    metrics = {f: (v or {}).get("data", {}) for f, v in (data.get("metrics") or {}).items()}
    params: dict[str, Any] = {}
    for values in (data.get("params") or {}).values():
        params |= flatten((values or {}).get("data", {}))
    if state:
        return {"name": f"{name} ({state})", "metrics": {}, "params": params}
    return {"name": name, "metrics": metrics, "params": params}


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: the scores, then each param whose value differs between rows."""
    params = sorted({k for r in rows for k in r["params"]})
    changed = [p for p in params if len({json.dumps(r["params"].get(p)) for r in rows}) > 1]
    header = ["experiment", *[c for c, _, _ in SCORES], TRAINED, *changed]
    body = []
    for r in rows:
        cells = [r["name"]]
        cells += [_show(r["metrics"].get(f, {}).get(k)) for _, f, k in SCORES]
        cells.append(_show(_training_s(r["metrics"])))
        cells += [_show(r["params"].get(p)) for p in changed]
        body.append(cells)
    return header, body


def _training_s(metrics: dict[str, dict[str, Any]]) -> float | None:
    """Seconds of training over every member's dvclive/<member>/metrics.json in the row."""
    times = [
        m.get("time_s")
        for f, m in metrics.items()
        if f.startswith("dvclive/") and f.endswith("/metrics.json")
    ]
    times = [t for t in times if isinstance(t, int | float)]
    return sum(times) if times else None


def render(header: list[str], body: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    )


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    parser.add_argument("--md", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    with user_errors():
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["dvc exp show failed"])[0]
            raise PipelineError(f"{first}; run it from the repo root, in the project's venv")
        print(render(*table(exp_rows(json.loads(done.stdout))), markdown=args.md))


def _rank(row: dict[str, Any]) -> tuple[bool, float]:
    value = row["metrics"].get("metrics/evaluate.json", {}).get("val/map3")
    return (value is None, -(value or 0.0))


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 and not math.isnan(value) else f"{value:,.0f}"
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


if __name__ == "__main__":
    main()
