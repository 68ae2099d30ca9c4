"""Run the side-by-side benchmarks: `python benchmarks/run.py [name ...]` (all when no name is given).

Each benchmark is a module `bench_<name>.py` beside this file with `run(out_dir: Path) -> list[dict]`; it
measures its peers in the same run, writes its JSON through `report.write` and returns its rows, which are
printed here as a table. Run from `make bench`; results land in bench-results/.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import report

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--out", type=Path, default=HERE.parent / "bench-results", help="where JSON results go")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(available())
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; available: {', '.join(available())}")
    for name in args.names or available():
        module = importlib.import_module(f"bench_{name}")
        print(f"\n== {name} ==", flush=True)
        rows = module.run(args.out)
        print(report.table(rows), flush=True)
    print(f"\nJSON results in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
