"""Every stage's metrics as one readable report (not a stage): `python -m pipeline.report`.

`dvc metrics show` puts every key of every file in one wide table; this prints them per stage,
one per line, leaving out per-reason counts that are zero. `--all` keeps those too.
"""

from __future__ import annotations

import argparse
import json

from pipeline.common.paths import STAGES, Paths

_BREAKDOWNS = ("rejected/", "test/invalid/")  # per-reason counts: noise when zero


def format_report(metrics: dict[str, dict], show_all: bool = False) -> str:
    """`{stage: {key: value}}` -> aligned text, stages in pipeline order."""
    lines = []
    for stage, values in metrics.items():
        lines.append(stage)
        for key, value in sorted(values.items()):
            if not show_all and value == 0 and key.startswith(_BREAKDOWNS):
                continue
            if isinstance(value, float):
                value = f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}"
            elif isinstance(value, int) and not isinstance(value, bool):
                value = f"{value:,}"
            lines.append(f"  {key:<28} {value}")
    return "\n".join(lines)


def read_metrics(paths: Paths) -> dict[str, dict]:
    """The metrics of every stage that has run (a missing file is a stage not yet run); the
    train stage once per member that has trained (`train@<member>`)."""
    files = {}
    for stage in STAGES:
        if stage != "train":
            files[stage] = paths.metrics_path(stage)
            continue
        for path in sorted(paths.live_dir.glob("*/metrics.json")):
            files[f"train@{path.parent.name}"] = path
    files["submit"] = paths.submit_metrics_path  # the leaderboard, after `pipeline.submit`
    metrics = {stage: json.loads(p.read_text()) for stage, p in files.items() if p.is_file()}
    return {stage: values for stage, values in metrics.items() if values}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="keep zero per-reason counts")
    args = parser.parse_args(argv)
    metrics = read_metrics(Paths.under("."))
    print(format_report(metrics, args.all) if metrics else "no metrics yet; run `make repro`")


if __name__ == "__main__":
    main()
