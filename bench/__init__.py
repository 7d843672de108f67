"""The benchmarks (`make bench-*`, `python -m bench.NAME`): JSON lines on stdout, through :mod:`bench.harness`."""
