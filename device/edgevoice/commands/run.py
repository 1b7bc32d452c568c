"""`edgevoice run`: the daemon in the foreground; what systemd starts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import math
import os
import signal
import threading
from typing import TYPE_CHECKING

from .. import config
from ..errors import UserError

if TYPE_CHECKING:
    from ..appliance.notify import Notifier
    from ..appliance.status import Status
    from ..daemon.voice import Service, VoiceLoop

log = logging.getLogger("edgevoice.run")

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C; SIGTERM is a normal stop (0)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=f"TOML settings (default {config.DEFAULT_PATH}, if present)")
    # Parsed here rather than by argparse, whose errors are a usage block, not one line naming the flag.
    parser.add_argument(
        "--input-pace",
        metavar="FACTOR",
        help="pace capture reads to FACTOR x real time (for ALSA file PCMs, which have no clock)",
    )
    parser.add_argument(
        "--input-frames",
        metavar="N",
        help="stop reading capture after N frames, answer what was heard, then exit (file PCMs)",
    )
    parser.set_defaults(func=run)


def positive_float(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} must be a positive number (got {text!r})")
    return value


def positive_int(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{flag} must be a whole number of frames, at least 1 (got {text!r})")
    return value


def run(args: argparse.Namespace) -> int:
    from ..appliance.notify import Notifier
    from ..models.lean import lean_botocore

    notifier = Notifier.from_environ()  # before any child process could inherit $NOTIFY_SOCKET
    faulthandler.enable()  # a watchdog abort (SIGABRT) writes every thread's stack to the journal
    lean_botocore()  # first, before anything imports strands (and botocore with it)
    from .. import checks
    from ..audio import alsalib
    from ..audio.devices import check_devices

    pace = positive_float("--input-pace", args.input_pace)
    frames = positive_int("--input-frames", args.input_frames)
    settings = config.load(args.config)
    checks.check(settings, voice=False)
    alsalib.install_error_handler()  # before the first open, so even the device check stays quiet
    check_devices(settings.audio)
    _log_start(args.config, settings)
    return asyncio.run(_main(settings, pace, frames, notifier))


def _log_start(path: str | None, settings: config.Settings) -> None:
    from ..session.current import current_session_id

    if path is not None:
        source = path
    elif config.DEFAULT_PATH.exists():
        source = str(config.DEFAULT_PATH)
    else:
        source = "embedded defaults"
    a = settings.audio
    log.info(
        "starting: config %s, capture %s, playback %s, provider %s, session %s",
        source,
        a.capture_device,
        a.playback_device,
        settings.model.provider,
        current_session_id(settings.session),
    )


async def _main(settings: config.Settings, pace: float | None, frames: int | None, notifier: Notifier) -> int:
    from .. import journal
    from ..appliance.status import Status, SyncBacklog, status_path
    from ..daemon.connection import AgentBug
    from ..daemon.voice import VoiceLoop, make_capture
    from ..session.current import current_session_id

    journal.context["session"] = current_session_id(settings.session)  # a field of every record under systemd
    status = Status(
        notifier,
        status_path(settings.service.status_file),
        provider=settings.model.provider,
        session_id=current_session_id(settings.session),
    )
    status.publish()
    capture = make_capture(settings, pace=pace, max_frames=frames)
    loop = VoiceLoop(
        settings,
        capture=capture,
        stop_when_input_ends=frames is not None,
        on_ready=lambda: ready(notifier, status, loop.state.state.value),
        on_state=lambda _old, new: status.update(state=new.value),
        on_phase=lambda _old, new: phase(new.value),
    )
    loop.services[:] = services(settings, loop, notifier, status)
    backlog = next((s for s in loop.services if isinstance(s, SyncBacklog)), None)

    def phase(new: str) -> None:
        status.update(connection=new, last_error=loop.connection.last_error)
        if backlog is not None:
            backlog.poke()

    def switched(session_id: str) -> None:
        journal.context["session"] = session_id
        status.update(session_id=session_id)

    loop.sessions.when_switched = switched
    task = asyncio.current_task()
    assert task is not None
    ev = asyncio.get_running_loop()
    got: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        if not got:
            notifier.send("STOPPING=1")
            status.update(state="stopping")
            _exit_after(settings.service.stop_timeout_s)
        got.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        ev.add_signal_handler(sig, stop, sig)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await loop.run()
    except AgentBug:
        return 1  # logged with its traceback; systemd restarts the daemon
    finally:
        status.remove()
    if got:
        log.info("stopped on %s", got[0].name)
    return INTERRUPTED if got and got[0] is signal.SIGINT else 0


def ready(notifier: Notifier, status: Status, state: str) -> None:
    """Audio flows (the first frame was accepted): systemd may consider the service started."""
    status.update(state=state)
    notifier.send("READY=1")


def services(settings: config.Settings, loop: VoiceLoop, notifier: Notifier, status: Status) -> list[Service]:
    """What runs beside the voice loop: the store retry, the watchdog, the status's watchers."""
    from ..appliance.panel import Panel
    from ..appliance.status import SyncBacklog, Watch
    from ..appliance.watchdog import Watchdog, capture_check, store_check
    from ..daemon.voice import StoreRetry

    def store_problem() -> str | None:
        sm = loop.session_manager
        return getattr(sm, "storage_problem", None)

    def write_started() -> float | None:
        return getattr(loop.session_manager, "write_started", None)

    out: list[Service] = [
        StoreRetry(lambda: loop.session_manager),
        Watchdog(
            notifier,
            [capture_check(loop.capture), store_check(write_started)],
            started=lambda: loop.mic.frames_seen > 0,  # READY=1 goes with the first frame
        ),
        Watch(status, {"storage": store_problem, "capture": lambda: capture_problem(loop)}),
    ]
    if settings.sync.bucket:
        out.append(SyncBacklog(status, settings.session.dir))
    panel = Panel(loop, status)
    if panel.wanted:
        out.append(panel)
    return out


def capture_problem(loop: VoiceLoop) -> str | None:
    """While the capture device has never opened (a USB mic not plugged in yet), the status says so: the
    unit stays `activating` until audio flows (READY=1), and `systemctl status` shows why."""
    capture = loop.capture
    if loop.mic.frames_seen or getattr(capture, "is_open", True) or capture.ended:
        return None
    return f"waiting for the microphone {capture.device}"


def _exit_after(seconds: float) -> None:
    """SIGTERM: playback stops and the store is flushed on the way out; should anything hang (a model's stop,
    a write on a dying card), the process is gone within `seconds` anyway. Every session write is atomic, so
    an exit at any point loses nothing stored."""

    def force() -> None:
        log.error("stop: still busy after %g s; exiting now", seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
