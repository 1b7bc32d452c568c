"""`edgevoice config check PATH` and `edgevoice config reference`."""

from __future__ import annotations

import argparse

from .. import config


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a config file; exit 2 with one line naming a bad key")
    check.add_argument("path", help="the TOML file")
    check.set_defaults(func=_check)
    ref = sub.add_parser("reference", help="print every key, its type, default and meaning as Markdown")
    ref.set_defaults(func=_reference)


def _check(args: argparse.Namespace) -> int:
    from .. import checks

    checks.check(config.load(args.path))  # what can be checked without the hardware: names, the voice
    print(f"{args.path}: ok")
    return 0


def _reference(args: argparse.Namespace) -> int:
    print("| key | type | default | meaning |")
    print("|---|---|---|---|")
    for key, tname, default, doc in config.field_docs():
        print(f"| `{key}` | {tname} | `{default}` | {doc} |")
    return 0
