"""The rehearsal's stand-in for a lent GPU machine's Python: this venv with only what the device
has (`prepare.DEVICE_HAS` and what those require) left importable from it.

    python -m benchmarks.gpu_check.devsim DIR     # writes DIR/sitecustomize.py
    PYTHONPATH=/tmp/site:DIR python ...           # the carried wheels in /tmp/site, the rest hidden

DIR/site-packages links every entry of the venv's site-packages but those of the packages the
device lacks (zarr, pydantic, dvclive, dvc, pytest, ...), and DIR/sitecustomize.py puts it in
the venv's place on sys.path, in every process started with DIR on PYTHONPATH (the check's
children inherit it). Imports then find those packages only in the carried wheels' folder, so a
wheel missing from `prepare.CARRIED` fails the rehearsal here, not the device run there.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement

from benchmarks.gpu_check.prepare import DEVICE_HAS

SITECUSTOMIZE = '''"""Written by benchmarks/gpu_check/devsim.py: only the device's packages."""
import sys

sys.path[:] = [{device_site!r} if p == {venv_site!r} else p for p in sys.path]
'''


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_closure() -> set[str]:
    """`DEVICE_HAS` and everything they require (unconditionally), as installed here."""
    seen: set[str] = set()
    stack = list(DEVICE_HAS)
    while stack:
        name = stack.pop()
        if _norm(name) in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(_norm(name))
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return seen


def device_site(out: Path, venv_site: Path) -> int:
    """`out` as the venv's site-packages with only the device's packages: a link to each entry
    of it that no other distribution owns. Returns how many entries it leaves out."""
    device = device_closure()
    hidden: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(venv_site)]):
        if _norm(dist.metadata["Name"]) not in device:
            hidden |= {Path(f).parts[0] for f in dist.files or [] if not Path(f).is_absolute()}
    hidden.discard("..")  # a file a wheel put outside site-packages (scripts): not an entry
    out.mkdir(parents=True)
    for entry in venv_site.iterdir():
        if entry.name not in hidden:
            (out / entry.name).symlink_to(entry)
    return len(hidden)


def main(argv: list[str] | None = None) -> None:
    out = Path((argv or sys.argv[1:])[0]).resolve()
    venv_site = Path(sysconfig.get_paths()["purelib"])
    shutil.rmtree(out, ignore_errors=True)
    left_out = device_site(out / "site-packages", venv_site)
    (out / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(device_site=str(out / "site-packages"), venv_site=str(venv_site))
    )
    print(f"devsim: {out}: {venv_site} without {left_out} entries the device has not")


if __name__ == "__main__":
    main()
