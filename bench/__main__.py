"""`python -m bench [NAME [ARGS...]]`: run one benchmark (bench/NAME.py), or all of them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("ingest", "dashboard")


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\nBenchmarks: " + ", ".join(BENCHMARKS))
        return 0
    if argv:
        module = importlib.import_module(f"bench.{argv[0]}")
        return int(module.main(argv[1:]))
    status = 0
    for name in BENCHMARKS:
        print(f"== bench {name} ==", flush=True)
        status |= int(importlib.import_module(f"bench.{name}").main([]))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
