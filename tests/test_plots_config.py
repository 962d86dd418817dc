"""`dvc plots show` and `dvc plots diff` on a fresh clone used with DVC directly: the committed
`.dvc/config` names no page template, so without `make setup` DVC draws its own page (vega from
its CDN) instead of failing; `python -m pipeline.plots` (what `make setup` runs) writes the
offline page and names it in this clone's `.dvc/config.local`. (The offline page drawn in a real
browser: test_plots_page.py.)"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR
from tests.dvc_helpers import commit, dvc, fresh_clone, python


def test_the_committed_dvc_config_names_no_page_that_a_clone_may_lack() -> None:
    config = configparser.ConfigParser()
    config.read(REPO_DIR / ".dvc" / "config")
    assert not config.has_option("plots", "html_template")
    # What DVC would look for must be in git, or be named only by a clone's own config.
    ignored = (REPO_DIR / ".dvc" / ".gitignore").read_text().split()
    assert "/config.local" in ignored and "/plots/offline.html" in ignored


@pytest.mark.slow
def test_plots_show_and_diff_work_on_a_fresh_clone_with_and_without_make_setup(
    tmp_path: Path,
) -> None:
    root = fresh_clone(tmp_path / "clone")
    assert not (root / ".dvc" / "plots" / "offline.html").exists()
    assert not (root / ".dvc" / "config.local").exists()
    # Two revisions of the committed curves: the baseline, and one validation fewer.
    curves = root / "reports" / "curves.tsv"
    curves.write_text("".join(curves.read_text().splitlines(keepends=True)[:-1]))
    commit(root, "one validation fewer")

    dvc(root, "plots", "show", "-o", str(tmp_path / "shown"))
    dvc(root, "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "diffed"))
    for page in ("shown", "diffed"):
        html = (tmp_path / page / "index.html").read_text()
        assert "{plot_divs}" not in html and "vega-embed" in html
        assert "Loss__train_and_val" in html  # a plot of dvc.yaml, drawn into DVC's own page
    assert "HEAD~1" in (tmp_path / "diffed" / "index.html").read_text()  # both revisions

    out = python(root, "-m", "pipeline.plots")  # `make setup`
    assert "named in .dvc/config.local" in out
    assert "html_template = plots/offline.html" in (root / ".dvc" / "config.local").read_text()
    dvc(root, "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "offline"))
    html = (tmp_path / "offline" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in html and "<script src=" not in html  # vega inlined
    assert "Loss__train_and_val" in html and "HEAD~1" in html
    git = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    assert git.stdout == ""  # the page and the clone's own config are not changes to commit
