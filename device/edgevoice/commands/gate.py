"""`edgevoice gate FILE [--config PATH] [--json]`: the turns the configured gate opens over a recording."""

from __future__ import annotations

import argparse
import json

from .. import config


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a WAV (any rate, channels) or .raw (16 kHz mono S16_LE)")
    parser.add_argument("--config", metavar="PATH", help="settings file (default: /etc/edgevoice/edgevoice.toml)")
    parser.add_argument("--json", action="store_true", help='one {"start_s": ..., "end_s": ...} object per line')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..gate.scan import scan_file

    settings = config.load(args.config)
    turns = scan_file(args.file, settings)  # streamed; a bad file is a UserError: one line, exit 2
    for i, t in enumerate(turns, 1):
        if args.json:
            if t.reason != "empty":  # a wake word (or a press) with nothing said: no turn anyone answers
                print(json.dumps({"start_s": round(t.start_s, 3), "end_s": round(t.end_s, 3)}))
        else:
            print(f"turn {i}: {t.start_s:8.3f} s to {t.end_s:8.3f} s ({t.end_s - t.start_s:.2f} s, {t.reason})")
    if not args.json and not turns:
        print("no turns")
    return 0
