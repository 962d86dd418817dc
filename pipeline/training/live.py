"""Training curves and the train stage's metrics, through dvclive.

`dvclive/metrics.json` is the run's summary (the best checkpoint's figures); `dvclive/plots/`
holds one row per evaluation. A resumed run replays its history first, because `dvc repro`
deletes the stage's outputs before it runs. Only the main rank logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LiveLog:
    def __init__(self, live_dir: Path | None, history: list[dict[str, float]]) -> None:
        self.live: Any = None
        if live_dir is None:
            return
        from dvclive import Live  # imports DVC's machinery: only where curves are written

        # dvcyaml=None, save_dvc_exp=False: inside `dvc repro`/`dvc exp run` dvclive must not
        # write its own dvc.yaml or create experiments; dvc.yaml declares its outputs.
        self.live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in history:
            self.log(row)

    def log(self, row: dict[str, float]) -> None:
        if self.live is None:
            return
        for name, value in row.items():
            self.live.log_metric(name, value)
        self.live.next_step()

    def end(self, summary: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.summary = {**summary, "step": self.live.step}
        self.live.end()
