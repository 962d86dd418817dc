"""`dvc plots show` renders offline, checked in a real browser: headless Chromium (Debian's
package) with every network name unresolvable, so a page that still needed a CDN would stay
blank. Each plot of dvc.yaml must come out as a drawn vega chart (or the gallery image)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clone_repo, write_params

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a headless Chromium needs here (no sandbox as root, no background connections),
# plus no name resolution at all: offline for real.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def plots_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import tiny_params

    root = clone_repo(tmp_path_factory.mktemp("plots") / "clone")
    write_params(root, tiny_params())
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    for args in (["repro"], ["plots", "show", "-o", "page"]):
        done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return root / "page" / "index.html"


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_every_plot_draws_offline_in_a_browser(plots_page: Path, tmp_path: Path) -> None:
    html = plots_page.read_text()
    assert "cdn.jsdelivr.net" not in html and "<script src=" not in html  # nothing to fetch
    done = chromium("--dump-dom", plots_page.as_uri(), profile=tmp_path / "profile")
    dom = done.stdout
    dom = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # the page as drawn
    # vega-embed turns each plot's div into a drawn chart: an <svg class="marks"> inside it.
    embeds = re.findall(r'<div id="([^"]+)" class="vega-embed', dom)
    drawn = re.findall(r'<svg[^>]*class="marks"', dom)
    assert len(embeds) == len(drawn) == 6, embeds  # 4 curves, the confusion, the mistakes
    assert "Loss__train_and_val" in embeds
    assert re.search(r"<img[^>]+gallery", dom)
    shot = tmp_path / "page.png"
    chromium(
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        plots_page.as_uri(),
        profile=tmp_path / "profile",
    )
    assert shot.stat().st_size > 50_000  # a page with charts on it, not a blank one
