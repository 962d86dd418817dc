"""The default ensemble on real drawings, end to end: `dvc repro` of the kaggle16-cpu preset.

    python -m benchmarks ensemble                          # via `make bench`
    python -m benchmarks.bench_ensemble --budget 120       # a quicker look
    python -m benchmarks.bench_ensemble -S train.ema_decay=0.999 --flip cnn --flip gru,bilstm,cnn

A copy of this working tree becomes a fresh repo; the `kaggle16-cpu` preset (the real 16-class
sample, 400 drawings to choose each member's checkpoint, 400 to fit the blend, 9,200 to train
on) is applied with `train.time_budget_s` = the budget per member (400 s; `BENCH_BUDGET_S`
overrides), and `dvc repro` runs the whole pipeline, timed. Everything is then scored on the
1,600 drawings of `test_simplified.csv` against `test_solution.csv`, which no member and no
blend saw: each member alone, the mean of their probabilities, the stacked blend, each with and
without prior correction (predict's `test/<x>/map3` and `test/<x>/prior/map3`), the blend
fitted with the other method (`logreg` or `weights`), every pair of members alone, and each
`--flip` set of members predicted with the mirror TTA (each a `dvc exp run` that reruns only
blend, evaluate and predict: nothing retrains). `-S key=value` changes any param of the run
(`-S ensemble.time_budget_s=1200 -S 'ensemble.time_shares={gru: 1, bilstm: 1, cnn: 2}'` splits
one budget; the pairs are then left out, since fewer members would each train longer). Run it
on a quiet machine: the budgets are wall time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.kaggle16 import KAGGLE16_DIR
from pipeline.preset import load_preset, merged

BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "400"))
PRESET = "kaggle16-cpu"
REPO_DIR = Path(__file__).resolve().parents[1]


def dvc(root: Path, *args: str) -> str:
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def read(root: Path, path: str) -> dict[str, Any]:
    return json.loads((root / path).read_text())


def run(
    budget_s: float = BUDGET_S,
    members: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    flips: list[list[str]] | None = None,
) -> dict[str, Any]:
    from pipeline.common.config import set_dotted
    from tests.conftest import clone_repo  # the tests' clean-clone helper

    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        root = clone_repo(Path(tmp) / "repo")
        preset = load_preset(PRESET, REPO_DIR / "configs")
        preset["download"]["path"] = str(KAGGLE16_DIR)  # the clone has no ../shared beside it
        preset["train"]["time_budget_s"] = budget_s
        if members:
            preset["ensemble"] = {"members": members}
        for dotted, value in (overrides or {}).items():
            set_dotted(preset, dotted, value)
        params = merged(yaml.safe_load((root / "params.yaml").read_text()), preset)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        start = time.perf_counter()
        dvc(root, "repro")
        repro_s = time.perf_counter() - start
        names = params["ensemble"]["members"]
        figures: dict[str, Any] = {
            "budget_s": budget_s,
            "overrides": overrides or {},
            "members": names,
            "dvc_repro_s": round(repro_s, 1),
        }
        predict, blend = read(root, "metrics/predict.json"), read(root, "metrics/blend.json")
        evaluate = read(root, "metrics/evaluate.json")
        for name in names:
            live = read(root, f"dvclive/{name}/metrics.json")
            figures[f"{name}/train/samples_per_s"] = round(live["train/samples_per_s"], 1)
            figures[f"{name}/steps"] = live["steps"]
            figures[f"{name}/val/map3"] = round(live["val/map3"], 4)
        for option in [*names, "mean", "blend"]:
            figures[f"test/{option}/map3"] = round(predict[f"test/{option}/map3"], 4)
            figures[f"test/{option}/prior/map3"] = round(predict[f"test/{option}/prior/map3"], 4)
        figures["test/map3"] = round(predict["test/map3"], 4)
        figures["val/map3"] = round(evaluate["val/map3"], 4)
        figures["blend/drawings"] = blend["blend/drawings"]
        figures["predict/drawings_per_s"] = predict["drawings_per_s"]
        figures["stage_s"] = {
            "preprocess": read(root, "metrics/preprocess.json")["time_s"],
            **{
                f"train@{n}": round(read(root, f"dvclive/{n}/metrics.json")["time_s"], 1)
                for n in names
            },
            "blend": blend["time_s"],
            "evaluate": evaluate["time_s"],
            "predict": predict["time_s"],
        }
        method = params["ensemble"]["method"]
        figures["method"] = method
        other = "logreg" if method != "logreg" else "weights"  # the other fitted blend
        dvc(root, "exp", "run", "-S", f"ensemble.method={other}")
        got = read(root, "metrics/predict.json")
        figures["other_method"] = other
        figures["test/other/map3"] = round(got["test/blend/map3"], 4)
        figures["test/other/prior/map3"] = round(got["test/blend/prior/map3"], 4)
        dvc(root, "exp", "run", "-S", f"ensemble.method={method}")  # back, for the subsets
        flipped_before = params["ensemble"]["flip_tta"]
        for flip in flips or []:  # the mirror TTA: blend, evaluate, predict rerun
            dvc(root, "exp", "run", "-S", f"ensemble.flip_tta=[{','.join(flip)}]")
            got = read(root, "metrics/predict.json")
            figures[f"test/flip[{'+'.join(flip)}]/map3"] = round(got["test/blend/map3"], 4)
            figures[f"test/flip[{'+'.join(flip)}]/prior/map3"] = round(got["test/map3"], 4)
        if flips:
            dvc(root, "exp", "run", "-S", f"ensemble.flip_tta=[{','.join(flipped_before)}]")
        # Smaller ensembles of the same trained members: only blend, evaluate, predict rerun.
        # (Not with an ensemble budget: fewer members would each get more time, so retrain.)
        pairs = len(names) > 2 and not params["ensemble"].get("time_budget_s")
        for subset in itertools.combinations(names, 2) if pairs else []:
            dvc(root, "exp", "run", "-S", f"ensemble.members=[{','.join(subset)}]")
            got = read(root, "metrics/predict.json")
            figures[f"test/blend[{'+'.join(subset)}]/prior/map3"] = round(got["test/map3"], 4)
    report(figures)
    return figures


def report(f: dict[str, Any]) -> None:
    names = f["members"]
    minutes = f["dvc_repro_s"] / 60
    print(
        f"\nkaggle16, `dvc repro` of the {PRESET} preset, {f['budget_s']:.0f} s per member; "
        f"test = 1,600 held-out drawings; whole dvc repro {minutes:.1f} min"
    )
    print("| option | test MAP@3 | with prior correction |")
    print("| --- | --- | --- |")
    for name in names:
        print(
            f"| {name} alone | {f[f'test/{name}/map3']:.4f} | {f[f'test/{name}/prior/map3']:.4f} |"
        )
    print(
        f"| mean of probabilities | {f['test/mean/map3']:.4f} | {f['test/mean/prior/map3']:.4f} |"
    )
    print(
        f"| blend, {f['method']} (default) | {f['test/blend/map3']:.4f} "
        f"| **{f['test/blend/prior/map3']:.4f}** |"
    )
    print(
        f"| blend, {f['other_method']} | {f['test/other/map3']:.4f} "
        f"| {f['test/other/prior/map3']:.4f} |"
    )
    for key in [k for k in f if k.startswith("test/blend[")]:
        print(f"| blend of {key[len('test/blend[') :].split(']')[0]} only | | {f[key]:.4f} |")
    for key in [k for k in f if k.startswith("test/flip[") and not k.endswith("prior/map3")]:
        which = key[len("test/flip[") :].split("]")[0]
        prior = f[key.replace("/map3", "/prior/map3")]
        print(f"| blend, mirror TTA for {which} | {f[key]:.4f} | {prior:.4f} |")
    print("\n| member | steps | train samples/s | val MAP@3 |")
    print("| --- | --- | --- | --- |")
    for name in names:
        print(
            f"| {name} | {f[f'{name}/steps']:,} | {f[f'{name}/train/samples_per_s']:,.0f} "
            f"| {f[f'{name}/val/map3']:.4f} |"
        )
    print(
        f"\nstage seconds: {f['stage_s']}; predict (members + blend) "
        f"{f['predict/drawings_per_s']:,.0f} drawings/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="time_budget_s per member")
    parser.add_argument("--members", nargs="+", help="ensemble.members (default: params.yaml)")
    parser.add_argument(
        "-S", dest="overrides", action="append", default=[], help="a param, e.g. -S train.seed=1"
    )
    parser.add_argument(
        "--flip", action="append", default=[], help="members with the mirror TTA, e.g. cnn,gru"
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    flips = [f.split(",") for f in args.flip]
    figures = run(args.budget, args.members, overrides, flips)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
