"""Prepare the device run here, where the network is: what a lent GPU machine lacks, carried.

    python -m benchmarks.gpu_check.prepare                        # .whl/ (cp312) and .gpu-data/
    python -m benchmarks.gpu_check.prepare --python-version 3.11 --dest .whl-cp311   # rehearsal

A lent GPU machine has no network and its own Python 3.12 with torch 2.11, numba, timm, pandas,
scikit-learn, PyYAML and tqdm (`DEVICE_HAS`, and what they require), but not zarr, numcodecs,
pydantic or dvclive. This downloads those as wheels with `pip download --no-deps
--only-binary=:all:` for the device's Python and platform, with each dependency the device lacks
(`CARRIED`: the import closure of `from dvclive import Live` and of the pipeline, found by the
rehearsal's `devsim`), at the versions of requirements.txt where it pins them, else this venv's.
It also copies the real drawings the rehearsal's CSV generator copies from (`../shared/
quickdraw`, 11 MB) into `.gpu-data/quickdraw`, and git-ignores both folders (.git/info/exclude):
they travel as the device run's carried paths, never in a commit.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.kaggle16 import REPO_DIR, SHARED_QUICKDRAW

DEVICE_HAS = ("torch", "numba", "timm", "pandas", "scikit-learn", "pyyaml", "tqdm", "pip")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MAX_MB = 40  # what the device run carries beside the tree, with the drawings, is 64 MiB in all
# What the device lacks: the pipeline's own needs, then what they import at run time.
CARRIED = (
    *("zarr", "numcodecs", "donfig", "google-crc32c"),  # the store
    *("pydantic", "pydantic-core", "annotated-types", "typing-inspection"),  # params
    "typing-extensions",  # pydantic needs a newer one than torch does
    "dvclive",  # the train stage's curves; the rest is what `from dvclive import Live` loads
    *("dvc", "dvc-data", "dvc-objects", "dvc-http", "dvc-render", "dvc-studio-client"),
    *("scmrepo", "dulwich", "funcy", "ruamel.yaml", "voluptuous", "dpath", "flatten-dict"),
    *("flufl.lock", "atpublic", "diskcache", "orjson", "pathspec", "pygtrie", "sqltrie"),
    *("tabulate", "wcwidth", "zc.lockfile", "colorama", "attrs", "psutil"),
    *("requests", "urllib3", "certifi", "charset-normalizer"),
)
IGNORED = (".whl/", ".whl-*/", ".gpu-data/")


def pinned() -> dict[str, str]:
    """requirements.txt's `name==version` pins, by normalised name."""
    pins = {}
    for line in (REPO_DIR / "requirements.txt").read_text().splitlines():
        if m := re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s#;]+)", line):
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def specs() -> list[str]:
    pins = pinned()
    return [f"{n}=={pins.get(_norm(n)) or importlib.metadata.version(n)}" for n in CARRIED]


def download(dest: Path, python_version: str) -> list[Path]:
    dest.mkdir(exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", *platforms]
    subprocess.run([*cmd, "-d", str(dest), *specs()], check=True)
    return sorted(dest.glob("*.whl"))


def copy_drawings(dest: Path) -> int:
    """The real drawings the rehearsal's generator reads (ndjson345, kaggle16's train files)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(SHARED_QUICKDRAW / "ndjson345", dest / "ndjson345")
    shutil.copytree(
        SHARED_QUICKDRAW / "kaggle16" / "train_simplified", dest / "kaggle16" / "train_simplified"
    )
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def git_ignore() -> None:
    """The carried folders in .git/info/exclude (this clone's own ignore list, not .gitignore)."""
    exclude = REPO_DIR / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    have = exclude.read_text().splitlines() if exclude.is_file() else []
    missing = [p for p in IGNORED if p not in have]
    if missing:
        exclude.write_text("\n".join([*have, *missing]) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check.prepare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--python-version", default="3.12", help="the device's Python (3.11: rehearsal)")
    p.add_argument("--dest", type=Path, default=REPO_DIR / ".whl")
    p.add_argument("--data", type=Path, default=REPO_DIR / ".gpu-data" / "quickdraw")
    args = p.parse_args(argv)
    git_ignore()
    wheels = download(args.dest, args.python_version)
    mb = sum(w.stat().st_size for w in wheels) / 1e6
    print(f"{len(wheels)} wheels, {mb:.1f} MB in {args.dest}")
    if mb > MAX_MB:
        raise SystemExit(f"error: the wheels are {mb:.1f} MB, over the {MAX_MB} MB a carry allows")
    print(f"real drawings: {copy_drawings(args.data) / 1e6:.1f} MB in {args.data}")


if __name__ == "__main__":
    main()
