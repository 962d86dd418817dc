"""`python -m benchmarks.gpu_check` (see the package docstring)."""

from benchmarks.gpu_check.cli import main

main()
