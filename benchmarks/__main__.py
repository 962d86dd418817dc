"""Run every benchmark and print its figures; results also land in benchmarks/results/*.json.

python -m benchmarks                 # all
python -m benchmarks preprocess      # only bench_preprocess
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def main(names: list[str]) -> None:
    package = Path(__file__).parent
    modules = sorted(
        m.name for m in pkgutil.iter_modules([str(package)]) if m.name.startswith("bench_")
    )
    if names:
        modules = [m for m in modules if m.removeprefix("bench_") in names or m in names]
    RESULTS_DIR.mkdir(exist_ok=True)
    for name in modules:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        figures = importlib.import_module(f"benchmarks.{name}").run()
        figures = {"wall_s": round(time.perf_counter() - start, 1), **figures}
        (RESULTS_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"--- {name}: {len(figures)} figures -> benchmarks/results/{name}.json")


if __name__ == "__main__":
    main(sys.argv[1:])
