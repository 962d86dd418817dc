"""Training curves and the train stage's metrics.

Every validation is one row of the member's `dvclive/<member>/curves.tsv` (step, time, epoch,
lr, losses, scores; evaluate gathers every member's into reports/curves.tsv, what dvc.yaml's
plots draw) and one dvclive step. `dvclive/<member>/metrics.json` is the run's summary, the best
checkpoint's figures. A resumed run rewrites both from its history first, because `dvc repro`
deletes the stage's outputs before it runs. Only the main rank logs.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

# curves.tsv column <- history row key (plain names: vega-lite reads `/` in a field as text, but
# `.` and `[` as paths, so the columns avoid anything clever)
CURVE_COLUMNS = {
    "step": "step",
    "time_s": "time_s",
    "epoch": "epoch",
    "lr": "lr",
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "val_map3": "val/map3",
    "val_top1": "val/top1",
    "samples_per_s": "train/samples_per_s",
}


class LiveLog:
    def __init__(
        self, live_dir: Path | None, curves_path: Path, history: list[dict[str, float]]
    ) -> None:
        self.live: Any = None
        self.curves_path = curves_path
        if live_dir is None:
            return
        from dvclive import Live  # imports DVC's machinery: only where curves are written

        # dvcyaml=None, save_dvc_exp=False: inside `dvc repro`/`dvc exp run` dvclive must not
        # write its own dvc.yaml or create experiments; dvc.yaml declares its outputs.
        self.live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
        with open(self.curves_path, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerow(CURVE_COLUMNS)
        for row in history:
            self.log(row)

    def log(self, row: dict[str, float]) -> None:
        if self.live is None:
            return
        for name, value in row.items():
            self.live.log_metric(name, value, plot=False)  # curves.tsv holds the plots
        self.live.next_step()
        with open(self.curves_path, "a", newline="") as f:
            values = [_cell(row.get(key)) for key in CURVE_COLUMNS.values()]
            csv.writer(f, delimiter="\t", lineterminator="\n").writerow(values)

    def end(self, summary: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.summary = summary
        self.live.end()


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"
