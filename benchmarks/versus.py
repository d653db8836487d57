"""``python -m benchmarks.versus``: smpc and CrypTen side by side in one invocation (same as
``smpc bench --versus crypten``); see ``smpc.bench.versus``."""

from smpc.bench.versus import main

if __name__ == "__main__":
    raise SystemExit(main())
