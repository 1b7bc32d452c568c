"""`edgevoice run`: the daemon in the foreground; what systemd starts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .. import config


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=f"TOML settings (default {config.DEFAULT_PATH}, if present)")
    parser.add_argument(
        "--input-pace",
        type=float,
        metavar="FACTOR",
        help="pace capture reads to FACTOR x real time (for ALSA file PCMs, which have no clock)",
    )
    parser.add_argument(
        "--input-frames",
        type=int,
        metavar="N",
        help="stop reading capture after N frames, answer what was heard, then exit (file PCMs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    return asyncio.run(_main(settings, args.input_pace, args.input_frames))


async def _main(settings: config.Settings, pace: float | None, frames: int | None) -> int:
    from ..daemon.voice import VoiceLoop, make_capture

    capture = make_capture(settings, pace=pace, max_frames=frames)
    loop = VoiceLoop(settings, capture=capture, stop_when_input_ends=frames is not None)
    task = asyncio.current_task()
    assert task is not None
    ev = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        ev.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await loop.run()
    return 0
