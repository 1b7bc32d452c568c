"""The `edgevoice` console script: one subcommand per module in `edgevoice.commands`.

Subcommand modules are imported only when chosen, so `edgevoice run` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import UserError

# name -> (module under edgevoice.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon in the foreground (what systemd starts)"),
    "demo": ("demo", "speak a sentence into the daemon through ALSA file PCMs and print the answer"),
    "gate": ("gate", "run the configured gate over a recording and print the turns it opens"),
    "config": ("config_cmd", "check a config file or print the reference of every key"),
    "sessions": ("sessions", "list, show, export or reset stored conversations"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgevoice", description="A Raspberry Pi smart speaker.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_.capitalize() + ".")
        # Only the chosen command's module is imported; the others get a bare parser for --help.
        if name == chosen:
            importlib.import_module(f"edgevoice.commands.{module}").register(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"edgevoice: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
