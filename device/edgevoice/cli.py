"""The `edgevoice` console script: one subcommand per module in `edgevoice.commands`.

Subcommand modules are imported only when chosen, so `edgevoice run` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import logs
from .errors import UserError

# name -> (module under edgevoice.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon in the foreground (what systemd starts)"),
    "demo": ("demo", "speak a sentence into the daemon through ALSA file PCMs and print the answer"),
    "gate": ("gate", "run the configured gate over a recording and print the turns it opens"),
    "config": ("config_cmd", "check a config file or print the reference of every key"),
    "sessions": ("sessions", "list, show, export or reset stored conversations"),
    "sync": ("sync", "copy the stored sessions to S3 (--once: what is pending, then exit), or pull one back"),
    "fleet": ("fleet", "list the devices and sessions in the sync bucket, or show one conversation from it"),
    "doctor": ("doctor", "check the audio devices, storage, clock, credentials and network; exit 0 when all pass"),
    "status": ("status", "what the running daemon is doing now: state, session, provider, last error, sync backlog"),
}


def version() -> str:
    """The installed distribution's version; the package's own when run from a source tree."""
    from importlib import metadata

    try:
        return metadata.version("edgevoice")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


class _Version(argparse.Action):
    """`--version`, looked up only when asked for: importlib.metadata costs about 0.1 s at start."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        print(f"edgevoice {version()}")
        parser.exit()


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgevoice", description="A Raspberry Pi smart speaker.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages (edgevoice's and Strands')")
    parser.add_argument(
        "--debug-logger",
        action="append",
        default=[],
        metavar="NAME",
        # Wire loggers print credentials at DEBUG; they are only turned on when named (see edgevoice.logs).
        help="also log DEBUG from this library logger (e.g. websockets, smithy_core); repeatable",
    )
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
    logs.setup(verbose=args.verbose, debug_loggers=args.debug_logger)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"edgevoice: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
