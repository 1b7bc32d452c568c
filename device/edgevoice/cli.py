"""The `edgevoice` console script."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("edgevoice: not yet", file=sys.stderr)
    return 1
