"""DVC's plots page, offline (not a stage): `python -m pipeline.plots [--show]`.

`dvc plots show` writes an HTML page that loads vega, vega-lite and vega-embed from a CDN, so it
is blank without a network. This writes `.dvc/plots/offline.html`: DVC's page template with
those three libraries inlined, from the bundle that the `vl-convert-python` package ships (so
nothing is downloaded), and names it as `plots.html_template` in `.dvc/config.local` (this
clone's own DVC config, not in git), so plain `dvc plots show` and `dvc plots diff` use it.
`make setup` runs it. The committed `.dvc/config` never names the page: a clone that has not
run this (or has lost the git-ignored page) gets DVC's own page, which loads the libraries from
the CDN, instead of an error. `--show` then runs `dvc plots show` and prints where the page is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_file

TEMPLATE_PATH = Path(".dvc/plots/offline.html")  # `plots.html_template` in .dvc/config.local
CONFIG_VALUE = "plots/offline.html"  # DVC reads a relative html_template from .dvc/
PLOTS_PLACEHOLDER = "{plot_divs}"  # where DVC puts the plots (dvc_render.html.HTML)

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>quickdraw-pipeline: plots</title>
  <script>
{bundle}
  </script>
  <style>
    body {{ font-family: sans-serif; margin: 16px; }}
    table {{ border-spacing: 15px; }}
    .vega-embed {{ margin: 8px; }}
  </style>
</head>
<body>
  {plots}
</body>
</html>
"""


def write_template(path: Path = TEMPLATE_PATH) -> Path:
    """DVC's page template with vega, vega-lite and vega-embed inlined as globals."""
    try:
        import vl_convert
    except ImportError:
        raise PipelineError("vl-convert-python is not installed; run `make setup`") from None
    # The bundle is plain JavaScript; the snippet exposes what DVC's inline plot scripts call.
    bundle = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed; window.vega = vega;")
    if PLOTS_PLACEHOLDER in bundle or "</script" in bundle.lower():
        raise PipelineError("the vega bundle cannot be inlined as it is; pin vl-convert-python")
    with atomic_file(path) as f:
        f.write(PAGE.format(bundle=bundle, plots=PLOTS_PLACEHOLDER))
    return path


def use_template(value: str = CONFIG_VALUE) -> None:
    """Name the page in this clone's `.dvc/config.local` (`dvc config --local`, which keeps
    whatever else is there: remotes, credentials)."""
    done = subprocess.run(
        [dvc_command(), "config", "--local", "plots.html_template", value],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["dvc config failed"])[-1]
        raise PipelineError(f"cannot set plots.html_template in .dvc/config.local: {why}")


def dvc_command() -> str:
    """The `dvc` of this Python's environment (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else shutil.which("dvc") or "dvc"


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    parser.add_argument("--show", action="store_true", help="then run `dvc plots show`")
    args = parser.parse_args(argv)
    with user_errors():
        path = write_template()
        use_template()
        print(
            f"wrote {path} ({path.stat().st_size:,} bytes), named in .dvc/config.local: "
            "dvc plots show works offline"
        )
        if args.show:
            subprocess.run([dvc_command(), "plots", "show"], check=True, stdout=sys.stdout)


if __name__ == "__main__":
    main()
