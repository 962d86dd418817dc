"""`python -m benchmarks.rehearsal`: see the package's docstring and `cli`."""

from benchmarks.rehearsal.cli import main

if __name__ == "__main__":
    main()
