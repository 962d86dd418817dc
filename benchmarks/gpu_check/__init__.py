"""GPU readiness check: one prepared command that measures what training on this machine will do.

    python -m benchmarks.gpu_check                       # a GPU: the full-gpu preset's members
    python -m benchmarks.gpu_check --device cpu --quick  # this CPU: every section, under 2 min
    bash benchmarks/gpu_check/on_device.sh               # a lent GPU machine, offline (docs)

Which models: the members of a run's params, built as the trainer builds them. On a GPU the
default is `--preset full-gpu` (resnet34d at 128 px, GRU and BiLSTM 3 x 256: the run the check
is for); on the CPU it is the repo's params.yaml (the small CPU models); `--preset NAME` picks
another preset, `--preset none` params.yaml, `--members` a subset.

Sections, each time-boxed, each calling the pipeline's own code, a failing case (compile
error, out of memory) a row note and never a crash:

1. train stage runs (`stage`, `--stage-s`, off by default; first, so a deadline takes the
   diagnostics rather than them): each member's train stage in its own process for that long,
   everything else as its params (the preset) say: samples/s, `time/val_share`, peak memory
   (torch's and the device's), GPU utilisation from `nvidia-smi` in the background.
2. train step (`steps`): samples/s of the trainer's `TrainStep` per member, RNN path (padded,
   fused) and batch size, under autocast (bf16 where supported), on pre-built batches already
   on the device; peak GPU memory per case.
3. input pipeline (`inputs`): drawings/s of `TrainBatches` + `make_loader` with N DataLoader
   workers, per encoder (points; images).
4. training loop (`loop`): `pipeline.train.run` in this process for `--loop-s` seconds per
   member, its own cadence: samples/s and `time/val_share` from the run's summary.
5. DDP (`stage`): the train stage under torchrun on every GPU (NCCL); skipped with one device,
   `--ddp-cpu` runs 2 gloo processes.
6. compiled train step (`compiled`): `torch.compile` on, in a child process given what is left
   of `--budget-s` (285 s on a GPU), killed when it is spent; cases it did not reach say so.

The store (`store`) is built by the preprocess stage into a temp folder (or `--work`): from the
real kaggle16 sample when it is beside the repo, else the synthetic source (`--source`); the
device run uses `--source rehearsal` (the rehearsal's 340-class CSVs, `--drawings` rows).
Markdown tables on stdout (`report`), every figure in `--out` (JSON, rewritten after each case).

Needs the repo's runtime requirements only; dvclive is optional (without it the stage runs log
no curves). Runs on torch 2.11 as on the pinned 2.13. Not a `bench_*` module: `make bench` does
not run it.
"""

from benchmarks.gpu_check.check import run
from benchmarks.gpu_check.members import rnn_paths
from benchmarks.gpu_check.report import tables

__all__ = ["rnn_paths", "run", "tables"]
