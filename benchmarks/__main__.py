"""``python -m benchmarks``: the benchmark suite (same as ``smpc bench``)."""

from smpc.bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
