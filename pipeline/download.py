"""Stage `download`: put the drawings in `data/raw/` in Kaggle's layout, whatever the source.

Inputs:  `download.source` (`pipeline/sources/`): `synthetic` (default, no network), `local`
         (`download.path` in Kaggle layout), `ndjson` (`download.path` of Google's files) or
         `kaggle` (the competition; zips cached in `data/cache/<competition>/`).
Outputs: data/raw/train_simplified/<word>.csv, data/raw/test_simplified.csv, and
         data/raw/test_solution.csv where the test labels are known (written atomically);
         metrics/download.json.
Run:     python -m pipeline.download [--params params.yaml]   (or `dvc repro download`)
         python -m pipeline.download --queue-links [PATH ...]   (see `queue_links`)

A relative `download.path` is from the repo root, in the workspace and in DVC's queued and
`--temp` runs alike: those run in a copy of the repo under `.dvc/tmp/exps/`, where DVC sets
`DVC_ROOT` to the original repo. DVC itself checks the path (a dep of this stage) from the copy
before any stage runs there, so a path beside the repo (`../shared/...`) also needs a link under
`.dvc/tmp/exps/` that leads DVC to the same folder (`queue_links`): the stage leaves one
whenever it reads such a path, `make setup` makes those of params.yaml and the presets, and
`--queue-links PATH` makes one for any path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.common.cli import stage_main, stage_parser, user_errors
from pipeline.common.config import DownloadConfig
from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_dir, write_json
from pipeline.common.paths import Paths
from pipeline.sources import kaggle
from pipeline.sources.local import copy_local
from pipeline.sources.ndjson import convert_ndjson
from pipeline.sources.synthetic import write_synthetic

log = logging.getLogger(__name__)


def _synthetic(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return write_synthetic(
        out_dir,
        cfg.synthetic_classes,
        cfg.synthetic_train_per_class,
        cfg.synthetic_test_per_class,
        cfg.seed,
    )


def _local(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return copy_local(source_dir(cfg), out_dir)


def _ndjson(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    return convert_ndjson(source_dir(cfg), out_dir, cfg.test_fraction, cfg.seed)


def _kaggle(cfg: DownloadConfig, out_dir: Path, paths: Paths) -> dict[str, int]:
    fetched = kaggle.fetch_kaggle(cfg.competition, paths.cache_dir / cfg.competition)
    return kaggle.install_kaggle(fetched, out_dir)


SOURCES: dict[str, Callable[[DownloadConfig, Path, Paths], dict[str, int]]] = {
    "synthetic": _synthetic,
    "local": _local,
    "ndjson": _ndjson,
    "kaggle": _kaggle,
}


def run(cfg: DownloadConfig, paths: Paths) -> dict[str, Any]:
    """Fill `paths.raw_dir` from `cfg.source`; write and return the metrics."""
    start = time.perf_counter()
    with atomic_dir(paths.raw_dir) as out_dir:  # a failure leaves the old data/raw as it was
        stats = SOURCES[cfg.source](cfg, out_dir, paths)
    elapsed = time.perf_counter() - start
    rows = stats["train/rows"] + stats["test/rows"]
    metrics = {
        "source": cfg.source,
        **stats,
        "time_s": round(elapsed, 2),
        "drawings_per_s": round(rows / max(elapsed, 1e-9), 1),
    }
    write_json(paths.metrics_path("download"), metrics)
    log.info(
        "download (%s): %s train files, %s train rows, %s test rows",
        cfg.source,
        f"{stats['train/files']:,}",
        f"{stats['train/rows']:,}",
        f"{stats['test/rows']:,}",
    )
    return metrics


def source_dir(cfg: DownloadConfig) -> Path:
    """`download.path`, a relative one from the repo root (the original repo in a queued run)."""
    if not cfg.path:
        raise PipelineError(
            f"download.source={cfg.source} needs download.path; set it in params.yaml "
            f"or run `dvc exp run -S download.path=/path/to/folder`"
        )
    root = repo_root()
    path = Path(os.path.normpath(root / Path(cfg.path).expanduser()))
    if path.is_dir():
        queue_links(root, cfg.path)
    return path


# Where DVC makes the repo's copy for a queued run (`dvc queue start`) and a `--temp` run: a
# fresh folder in each (dvc.repo.experiments: EXEC_TMP_DIR, the tempdir queue's "standalone").
EXPERIMENT_DIRS = (Path(".dvc/tmp/exps"), Path(".dvc/tmp/exps/standalone"))
# Names DVC uses in those folders itself (and mkdtemp's tmp*): never taken for a link.
DVC_NAMES = frozenset({"cache", "celery", "run", "rwlock", "rwlock.lock", "standalone"})


def repo_root() -> Path:
    """The repository a relative `download.path` is from: the cwd (DVC runs stages from the
    repo root), or in a queued / `--temp` run's copy under `.dvc/tmp/exps/`, the original repo,
    which DVC names in `DVC_ROOT`."""
    cwd = Path.cwd()
    env = os.environ.get("DVC_ROOT")
    if env:
        root = Path(env)
        here, there = cwd.resolve(), root.resolve()
        if here == there or here.is_relative_to(there / EXPERIMENT_DIRS[0]):
            return root
    return cwd


def queue_links(root: Path, path: str) -> list[Path]:
    """Links that let DVC find a folder beside the repo from a queued run's copy.

    DVC checks `${download.path}` (a dep of this stage) from the copy,
    `<root>/.dvc/tmp/exps/<tmp>/`, so `../shared/kaggle16` means
    `<root>/.dvc/tmp/exps/shared/kaggle16` there. A relative link
    `.dvc/tmp/exps/shared -> ../../../../shared` (and the same one level deeper for `--temp`
    runs) makes that the folder the workspace means. Only for `../<name>/...` paths (absolute
    ones need nothing; deeper ones are left alone); an entry there that is not such a link is
    never touched. Returns the links made or corrected now.
    """
    parts = Path(os.path.normpath(path)).parts
    if len(parts) < 2 or parts[0] != ".." or parts[1] == ".." or not (root / ".dvc").is_dir():
        return []
    name = parts[1]
    if name in DVC_NAMES or name.startswith("tmp"):
        log.warning(
            "DVC's queued runs cannot be led to ../%s (a name DVC uses itself); for "
            "`dvc exp run --queue`, give download.path as an absolute path",
            name,
        )
        return []
    made = []
    for folder in EXPERIMENT_DIRS:
        link = root / folder / name
        target = os.path.relpath(root.parent / name, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.exists() and not link.is_symlink():
            log.warning("%s is not a link DVC can follow to ../%s; left as it is", link, name)
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.parent / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: a queued run starting now sees the old or the new one
        made.append(link)
    if made:
        log.info("../%s linked for DVC's queued runs: %s", name, ", ".join(map(str, made)))
    return made


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument(
        "--queue-links",
        nargs="*",
        metavar="PATH",
        help="only make the links DVC's queued runs need to find PATH (default: the "
        "download.path of the params file and of every preset in configs/), then exit",
    )
    args = parser.parse_args(argv)
    if args.queue_links is None:
        stage_main("download", run, ["--params", str(args.params)], __doc__)
        return
    with user_errors():
        root = repo_root()
        if not (root / ".dvc").is_dir():
            raise PipelineError(f"{root} is not a DVC repo; run this from the repo root")
        paths = args.queue_links or _configured_paths(args.params)
        made = [link for path in paths for link in queue_links(root, path)]
        print(f"{len(made)} link(s) made for DVC's queued runs" if made else "links up to date")


def _configured_paths(params: Path) -> list[str]:
    """`download.path` in the params file and in each preset (`configs/*.yaml`), unchecked."""
    found = []
    for path in [params, *sorted(Path("configs").glob("*.yaml"))]:
        document = yaml.safe_load(path.read_text()) if path.is_file() else None
        section = (document or {}).get("download") if isinstance(document, dict) else None
        if isinstance(section, dict) and isinstance(section.get("path"), str):
            found.append(section["path"])
    return found


if __name__ == "__main__":
    main()
