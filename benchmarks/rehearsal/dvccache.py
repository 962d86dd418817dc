"""DVC's cache on disk: the pipeline's cached outputs committed into a DVC cache in a rehearsal's
run folder, once per cache type, and the bytes that the cache adds.

The run folder becomes a DVC repo (`dvc init --no-scm`) and `dvc add` commits the outputs that
the repo's dvc.yaml caches, which is the same commit into the cache that `dvc repro` does after
each stage; then `dvc checkout --relink` puts the workspace back from the cache as the type
links it, as a later checkout (`dvc exp apply`, `dvc pull`) would. The two differ: a commit
leaves a folder output's files as copies unless `hardlink` is the first type. Between cache
types the cache, the .dvc files and DVC's state are removed, so every type starts from scratch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.kaggle16 import REPO_DIR
from benchmarks.rehearsal.competition import log
from benchmarks.rehearsal.disk import bytes_on_disk, usage
from benchmarks.rehearsal.measure import run_step

DEFAULT = "default"  # no cache.type: DVC's own default, reflink,copy (a copy on ext4)
# The proposal, for when the repo's .dvc/config sets no cache.type.
PROPOSED = "reflink,hardlink,copy"
DVC = [sys.executable, "-m", "dvc"]


def repo_cache_type() -> str | None:
    """cache.type in the repo's .dvc/config, or None where it sets none."""
    done = subprocess.run(
        [*DVC, "config", "--project", "cache.type"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def default_cache_types() -> list[str]:
    """Before (DVC's default) and after (the repo's cache.type, else the issue's proposal)."""
    return [DEFAULT, repo_cache_type() or PROPOSED]


def cached_outs(members: list[str]) -> list[str]:
    """The repo's dvc.yaml outputs that DVC caches (not `cache: false`), `${item}` expanded to
    each member; an output with any other `${...}` in its path is left out."""
    stages = yaml.safe_load((REPO_DIR / "dvc.yaml").read_text())["stages"]
    outs: list[str] = []
    for stage in stages.values():
        items = members if "foreach" in stage else [None]
        for out in stage.get("do", stage).get("outs", []):
            path, opts = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if (opts or {}).get("cache", True) is False:
                continue
            for item in items:
                expanded = path.replace("${item}", item) if item else path
                if not re.search(r"\$\{", expanded):
                    outs.append(expanded)
    return list(dict.fromkeys(outs))


def _dvc(run_dir: Path, *args: str, check: bool = True) -> None:
    subprocess.run([*DVC, *args], cwd=run_dir, capture_output=True, check=check)


def _reset(run_dir: Path, outs: list[str], site_dir: Path) -> None:
    """No cache, no .dvc files, no DVC state: the next `dvc add` starts from scratch."""
    shutil.rmtree(run_dir / ".dvc" / "cache", ignore_errors=True)
    shutil.rmtree(site_dir, ignore_errors=True)
    for out in outs:
        (run_dir / f"{out}.dvc").unlink(missing_ok=True)


def cache_bytes_by_output(run_dir: Path, outs: list[str]) -> dict[str, int]:
    """Per output: the bytes on disk of its objects in the DVC cache that no workspace file
    links to (its copies), found through its .dvc file and, for a folder, the .dir manifest.

    An object shared by two outputs (the same bytes) goes to the first; the manifests and the
    cache's own folders go to none.
    """
    seen: set[tuple[int, int]] = set()
    for out in outs:
        bytes_on_disk(run_dir / out, seen)  # the workspace's inodes: a linked object adds none
    cache = run_dir / ".dvc" / "cache" / "files" / "md5"
    figures = {}
    for out in outs:
        md5 = yaml.safe_load((run_dir / f"{out}.dvc").read_text())["outs"][0]["md5"]
        objects = [md5]
        if md5.endswith(".dir"):
            manifest = json.loads((cache / md5[:2] / md5[2:]).read_text())
            objects = [entry["md5"] for entry in manifest]
        figures[out] = sum(bytes_on_disk(cache / oid[:2] / oid[2:], seen) for oid in objects)
    return figures


def measure_cache(
    run_dir: Path, logs: Path, cache_types: list[str], members: list[str]
) -> dict[str, Any]:
    """Per cache type: `dvc add` of the cached outputs (what `dvc repro` leaves), then `dvc
    checkout --relink` (what a later checkout leaves, linked where the type allows), each with
    its figures (`_dvc_step`)."""
    outs = [o for o in cached_outs(members) if (run_dir / o).exists()]
    site_dir = run_dir.parent / "dvc-site"  # DVC's state and index: here, not in /var/tmp
    _dvc(run_dir, "init", "--no-scm", "-q")
    _dvc(run_dir, "config", "core.analytics", "false")
    _dvc(run_dir, "config", "core.site_cache_dir", str(site_dir))
    figures: dict[str, Any] = {}
    for cache_type in cache_types:
        _reset(run_dir, outs, site_dir)
        if cache_type == DEFAULT:
            _dvc(run_dir, "config", "--unset", "cache.type", check=False)
        else:
            _dvc(run_dir, "config", "cache.type", cache_type)
        added = _dvc_step(run_dir, logs, f"dvc add ({cache_type})", ["add", "-q", *outs], outs)
        relinked = _dvc_step(
            run_dir, logs, f"dvc checkout --relink ({cache_type})", ["checkout", "--relink"], outs
        )
        figures[cache_type] = added | {"relinked": relinked}
        log.info(
            "cache.type %s: the DVC cache adds %s MB after dvc add (file system: %s MB), "
            "%s MB after dvc checkout --relink",
            cache_type,
            f"{added['parts']['dvc cache'] / 1e6:,.0f}",
            f"{added['fs_used_grew'] / 1e6:,.0f}",
            f"{relinked['parts']['dvc cache'] / 1e6:,.0f}",
        )
    return {"outs": outs, "types": figures}


def _dvc_step(
    run_dir: Path, logs: Path, name: str, args: list[str], outs: list[str]
) -> dict[str, Any]:
    """Run `dvc <args>` as a measured step; its wall time and memory, how much the file
    system's used bytes grew, every part's bytes on disk after it, and each output's bytes in
    the workspace and in the cache."""
    used = shutil.disk_usage(run_dir).used
    m, _ = run_step(name, [*DVC, *args], run_dir, logs)
    grew = shutil.disk_usage(run_dir).used - used
    return {
        "wall_s": round(m.wall_s, 2),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "max_rss_mb": round(m.max_rss_mb, 1),
        "fs_used_grew": grew,
        "parts": usage(run_dir),
        "cache_by_output": cache_bytes_by_output(run_dir, outs),
        "output_bytes": {o: bytes_on_disk(run_dir / o, folders=False) for o in outs},
    }
