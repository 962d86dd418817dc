#!/usr/bin/env bash
# The GPU check on a lent GPU machine: no network, one command, at most 9 minutes.
#
#   bash benchmarks/gpu_check/on_device.sh        # from the repo root, with .whl/ and .gpu-data/
#
# Before, here (the network): `python -m benchmarks.gpu_check.prepare` puts the wheels the
# machine lacks in .whl/ and the real drawings in .gpu-data/quickdraw (both git-ignored, carried
# beside the tree). Then, there:
#   1. the wheels into /tmp/site (pip, offline), first on PYTHONPATH;
#   2. nvidia-smi's view of the whole run in the background ($OUT/nvidia-smi.csv);
#   3. `python -m benchmarks.gpu_check --preset full-gpu` on a store of ~1M drawings made by the
#      rehearsal's CSV generator (340 classes, jittered copies of real drawings): first each
#      member's train stage for 90 s as the preset sets it (--stage-s 90: samples/s,
#      time/val_share, peak memory, GPU utilisation), then the train-step cases and the input
#      pipeline; the in-process loop is skipped (--loop-s 0: the stage runs measure the same
#      loop), DDP needs several GPUs, and the compiled cases get what is left of --budget-s;
#   4. every figure, log and table under $OUT (default /tmp/gpu-check-out).
#
# Rehearsal on a CPU (small sizes, this venv with only the packages the device has, the cp311
# wheels of `prepare --python-version 3.11 --dest .whl-cp311`):
#   GPU_CHECK_REHEARSAL=1 bash benchmarks/gpu_check/on_device.sh
set -euo pipefail

main() {  # the whole script is read before it runs: editing the file mid-run cannot derail it
    cd "$(dirname "$0")/../.."
    OUT=${OUT:-/tmp/gpu-check-out}
    DEADLINE_S=${GPU_CHECK_DEADLINE_S:-530}    # the whole script; the tool's box is 9 minutes
    WORK=${GPU_CHECK_WORK:-/tmp/gpu-check-work} # the store stays here: a rerun reuses it
    SITE=${GPU_CHECK_SITE:-/tmp/site}
    if [[ ${GPU_CHECK_REHEARSAL:-0} == 1 ]]; then
        PY=${PY:-.venv/bin/python} WHEELS=${WHEELS:-.whl-cp311}
        DEVICE=cpu DRAWINGS=${DRAWINGS:-20000} STAGE_S=${STAGE_S:-5} BUDGET_S=${BUDGET_S:-900}
        EXTRA=(--quick --batches 8 --image-size 32)  # the preset's models, in minutes on 2 cores
        DEVSIM=/tmp/gpu-check-devsim
        "$PY" -m benchmarks.gpu_check.devsim "$DEVSIM"
    else
        PY=${PY:-python3} WHEELS=${WHEELS:-.whl}
        DEVICE=auto DRAWINGS=${DRAWINGS:-1000000} STAGE_S=${STAGE_S:-90} BUDGET_S=${BUDGET_S:-490}
        EXTRA=() DEVSIM=
    fi
    mkdir -p "$OUT"
    say() { echo "on_device $(date +%T) +${SECONDS}s: $*" | tee -a "$OUT/on_device.log"; }

    # 1. What the machine lacks, from the carried wheels.
    rm -rf "$SITE"
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
    then  # no pip there: a wheel is a zip of what goes into site-packages
        mkdir -p "$SITE" && for w in "$WHEELS"/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
    fi
    export PYTHONPATH="$SITE${DEVSIM:+:$DEVSIM}${PYTHONPATH:+:$PYTHONPATH}"
    export QUICKDRAW_SHARED=${QUICKDRAW_SHARED:-$PWD/.gpu-data/quickdraw}
    say "$(ls "$WHEELS"/*.whl | wc -l) wheels installed into $SITE"
    "$PY" - <<'EOF' 2>&1 | tee -a "$OUT/on_device.log" || true
import importlib.metadata as m, platform, torch
import pipeline.train, pipeline.core.store, benchmarks.rehearsal.csvgen  # what the run imports
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
names = ("numpy", "zarr", "numcodecs", "pydantic", "numba", "timm", "torchvision", "dvclive")
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA "
      f"{torch.version.cuda}), {gpu};", ", ".join(f"{n} {m.version(n)}" for n in names))
EOF

    # 2. The driver's view of the whole run, once a second (our own process: stopped on exit).
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total,power.draw \
            --format=csv -l 1 > "$OUT/nvidia-smi.csv" 2>&1 &
        SMI=$!
        trap 'kill "$SMI" 2> /dev/null || true' EXIT
    else
        say "no nvidia-smi: GPU utilisation is not measured"
    fi

    # 3. The check, inside what is left of the deadline (SIGTERM at it: the check kills its
    # children on the way out, and its JSON holds every case finished by then).
    LEFT=$((DEADLINE_S - SECONDS))
    say "gpu_check: --preset full-gpu, --drawings $DRAWINGS, --stage-s $STAGE_S, ${LEFT}s left"
    set +e
    timeout --kill-after=20 "$LEFT" "$PY" -m benchmarks.gpu_check --device "$DEVICE" \
        --preset full-gpu --source rehearsal --drawings "$DRAWINGS" --stage-s "$STAGE_S" \
        --loop-s 0 --budget-s "$BUDGET_S" --work "$WORK" --out "$OUT/gpu_check.json" \
        "${EXTRA[@]}" > "$OUT/gpu_check.md" 2> "$OUT/gpu_check.log"
    CODE=$?
    set -e

    # 4. The stage runs' own logs and summaries beside the report; the tables last (what a caller
    # sees first of the output's tail).
    for run in "$WORK"/stage-* "$WORK"/ddp; do
        [[ -d $run ]] || continue
        mkdir -p "$OUT/runs/${run##*/}"
        cp "$run"/stage.log "$run"/summary.json "$OUT/runs/${run##*/}/" 2> /dev/null || true
    done
    grep '^gpu_check:' "$OUT/gpu_check.log" | tail -n 40
    if [[ $CODE != 0 ]]; then
        say "gpu_check exited $CODE; its log's tail:"
        tail -n 30 "$OUT/gpu_check.log"
    fi
    cat "$OUT/gpu_check.md"
    say "done (exit $CODE): $OUT"
    exit "$CODE"
}

main "$@"
