"""A full-scale rehearsal on this machine: competition-sized data made from real drawings, every
stage run on it, wall time, peak memory and bytes on disk per stage, and a projection to the real
competition.

    python -m benchmarks.rehearsal                      # 5,000,000 drawings; scales 0.2 and 1.0
    python -m benchmarks.rehearsal --drawings 30000 --test-rows 2000 --train-s 5 --scales 0.5,1.0

1. **Data** (`csvgen`, from `pool` and `csvtext`), in Kaggle's layout under `--work` (default
   /tmp/quickdraw-rehearsal): `train_simplified/<word>.csv`
   (countrycode,drawing,key_id,recognized,timestamp,word) for the competition's 340 classes,
   `test_simplified.csv` (key_id,countrycode,drawing; `--test-rows`, balanced over the classes,
   shuffled) and `test_solution.csv` (key_id,word with `_`).
   The 340 classes are the 345 of `../shared/quickdraw/ndjson345` less the five the Kaggle
   competition did not have: aircraft carrier, knife, lighter, rifle, syringe (`NOT_IN_KAGGLE`;
   the list of a published competition solution, ngxbac's CLASS_NAME, compared with the 345).
   Per-class counts are imbalanced: weights drawn uniformly from [0.3, 2.0] (seeded), scaled so
   the counts sum to `--drawings`. Every row is a jittered copy of a real drawing of its class
   (ndjson345, plus kaggle16's train files where the class is there: about 25 to 2,500 source
   drawings per class): a per-row scale of 0.9-1.1 per axis about the canvas centre, a shift of
   up to 8 px, +-2 px per point, rounded and clipped to 0-255, strokes kept; country and
   `recognized` are the source's, the timestamp random in early 2017, and key_ids fresh and
   unique (16 digits). A fifth of each class's sources (at least one) is kept for the test rows,
   so test drawings are copies of drawings no training row copies; val and blend rows do share
   sources with train rows, so val figures are optimistic.
   The CSV text is built by NumPy in chunks of `CHUNK_ROWS` rows with no Python per row or per
   point (`tokens`, `csvtext`). One class file per task, `--gen-processes` at once.
2. **The stages** (`scale`) run as `python -m pipeline.<stage>` subprocesses in `<work>/s<N>/run`,
   which holds a `params.yaml` made from the repo's (`params`) with: download.source local (the
   generated folder), preprocess.val_per_class and blend_per_class 50 (17,000 drawings each),
   train.time_budget_s = `--train-s`, validation only at the end of each member's run,
   ensemble.members = `--members` (default: params.yaml's), ensemble.method = `--blend-method`
   if given. Also the input pipeline alone (`loader`: `TrainBatches` + `make_loader`, 0 and 2
   DataLoader workers, at the member's batch_size and at 512, for gru's points encoder, cnn's
   image encoder and every member's), and the submission checked by `python -m pipeline.submit
   --dry-run` (offline). `--threads N` sets OMP/MKL/OpenBLAS threads for every step (default:
   the stages' own; torch then uses every core in blend, evaluate and predict, which on a busy
   2-core box was 3-5x slower than one thread).
3. **Per stage** (`measure`): wall seconds of the subprocess; peak memory two ways: the sum of
   PSS over the process tree (pool and DataLoader workers included; sampled every 0.25 s from
   /proc: the memory the stage really holds) and the largest single process's peak RSS (exact:
   GNU time's %M, the kernel's max over the step's process and its waited-for children, not a
   sum; the step runs under /usr/bin/time, since a process started straight from this one would
   start its high-water mark at this one's RSS).
   `--scales 0.2,1.0` runs everything at those fractions of `--drawings` and prints the ratios:
   (time ratio) / (drawings ratio) near 1 is linear. Training has a fixed budget, and blend,
   evaluate and predict work on fixed-size splits (17,000 blend, 17,000 val, `--test-rows` test
   drawings), so those are flat by design.
4. **Bytes on disk** (`disk`, `dvccache`): st_blocks x 512, each inode once, of every part of
   the run folder (raw CSV, store, models, submission, DVC cache, checkpoints, the rest) after
   the stages; preprocess's peak (its temporary runs and new store), sampled every second; then
   the run folder becomes a DVC repo and `dvc add` commits the outputs the repo's dvc.yaml
   caches, once per `--cache-type` (default: DVC's own default, then the repo's .dvc/config
   cache.type), each from an empty cache, with the bytes the cache adds and its wall time.
5. **Projection** (`project`, `project_disk`) to the competition (49,707,579 train drawings,
   112,199 test rows, 340 classes) on a 16-core, one-GPU machine: preprocess pass 1 from the
   measured CSV MB/s per worker x 16, pass 2 from its measured serial drawings/s; hours per
   epoch per member from `--gpu-samples-per-s` (default: placeholders, stated, not measured),
   against the input pipeline at batch 512 with 15 DataLoader workers, from 15 x half the
   measured 2-worker rate (low: transfers and contention included) to 15 x the in-process rate
   (high); an epoch takes the slower of the GPU and the low figure. Blend, evaluate and predict
   are measured at the competition's sizes (17,000, 17,000 and 112,199 drawings) on this
   machine's CPU. Bytes on disk per part and per cache type, the zip from the deflate ratio of
   kaggle16's real CSVs, against the target of 1.5 x the CSV plus the zip.
6. Markdown tables on stdout (`tables`); every figure in `--out` (default
   benchmarks/results/rehearsal.json).

Disk: about 2.1 x the CSV (about 500 bytes per drawing) plus three times the store (about 100
bytes per drawing) for the largest scale, checked before anything is written; each scale's
folder is removed once measured unless `--keep` (the stage logs stay in `<work>/logs/`). The
generated folder is removed before DVC's cache is measured (`data/raw` keeps its files).
"""
