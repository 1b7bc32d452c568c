"""`bench/run [--json] [--quick] [--only SUBSTRING]`: run every bench module and print its rows."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Iterator

from bench.common import Row, fmt


def _modules() -> Iterator[str]:
    import bench

    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if info.name.startswith("rows_"):
            yield f"bench.{info.name}"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    ap.add_argument("--json", action="store_true", help="one JSON object a row")
    ap.add_argument("--quick", action="store_true", help="a short run (under two minutes), same row names")
    ap.add_argument("--only", default="", help="run only modules whose name contains this")
    args = ap.parse_args()
    if not args.json:
        print(f"{'name':<62} {'value':>10} {'unit':<10} {'anchor':>10} {'ratio':>8}  {'goal':<14} ok")
    failed = 0
    for name in _modules():
        if args.only not in name:
            continue
        t0 = time.monotonic()
        rows: list[Row] = list(importlib.import_module(name).rows(quick=args.quick))
        for r in rows:
            if args.json:
                print(r.as_json(), flush=True)
            else:
                ok = {True: "yes", False: "NO", None: ""}[r.ok]
                print(
                    f"{r.name:<62} {fmt(r.value):>10} {r.unit:<10} {fmt(r.anchor):>10} "
                    f"{fmt(r.ratio):>8}  {r.goal:<14} {ok}",
                    flush=True,
                )
            failed += r.ok is False
        print(f"# {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
