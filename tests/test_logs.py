"""Logging: the redacting filter, which loggers `-v` turns on, and what an INFO journal may hold."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgevoice import logs
from tests.alsa import AsoundRc, alsa_home

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
# Matches none of the filter's patterns: only registration can catch it.
SECRET = "evk1-Pz8Qm3Lr6Tw2Xn9Vb4Jc7Hd0Fs5Gk"
WIRE = ("websockets", "websockets.client", "smithy_core", "smithy_http", "smithy_aws_core", "aws_sdk_signers",
        "aws_sdk_bedrock_runtime", "botocore", "boto3", "urllib3", "httpx", "httpcore", "google_genai",
        "google_genai._api_client", "awscrt", "asyncio")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The console script's logging set up on a StringIO; everything it changed is put back after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.excepthook, threading.excepthook)
    levels = {name: logging.getLogger(name).level for name in (*WIRE, *logs.OWN_LOGGERS, "edgevoice.daemon.connection")}
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    sys.excepthook, threading.excepthook = saved[2], saved[3]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logs._forget_all()


def test_filter_redacts_message_args_and_exception_text(log_stream: io.StringIO) -> None:
    logs.setup(stream=log_stream)
    logs.register_secret(SECRET)
    log = logging.getLogger("edgevoice.test")
    log.info("> %s: %s", "Authorization", f"Token {SECRET}")  # the secret only in the args
    log.info("config %r", {"key": SECRET})
    try:
        raise ValueError(f"invalid header value {SECRET!r}")
    except ValueError:
        log.exception("connect failed")
    log.error("cut: %s", f"{'x' * 20} {SECRET}"[:30])  # a message cut inside the key
    log.error("tail: %s", SECRET[9:])
    out = log_stream.getvalue()
    assert "Traceback" in out and "connect failed" in out and "ValueError: invalid header value" in out
    assert out.count(logs.REDACTED) >= 5
    for piece in (SECRET, SECRET[:12], SECRET[-12:], SECRET[:10]):
        assert piece not in out, out


def test_a_record_other_handlers_see_is_redacted_too(log_stream: io.StringIO) -> None:
    """The filter rewrites the record itself, so pytest's caplog or a second handler sees it redacted."""
    handler = logs.setup(stream=log_stream)
    logs.register_secret(SECRET)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "key %s", (SECRET,), None)
    assert handler.filter(record)
    assert record.getMessage() == f"key {logs.REDACTED}"


PATTERNS = [
    "> Authorization: Bearer tok3n-Abc9Xyz7Qwe",
    "('authorization', 'Bearer tok3n-Abc9Xyz7Qwe')",
    "> x-goog-api-key: tok3n-Abc9Xyz7Qwe",
    "GET /v1beta/models?alt=sse&key=tok3n-Abc9Xyz7Qwe HTTP/1.1",
    "'X-Amz-Security-Token': Field(name='X-Amz-Security-Token', value=['tok3n-Abc9Xyz7Qwe'])",
    "X-Amz-Security-Token=tok3n-Abc9Xyz7Qwe&X-Amz-Date=20260101",
    "aws_access_key_id='ASIAZZZZ1234567890AB' aws_secret_access_key='tok3n-Abc9Xyz7Qwe'",
    "Credential=AKIAZZZZ1234567890AB/20260101/us-east-1/bedrock/aws4_request, Signature=tok3n-Abc9Xyz7Qwe",
    '{"api_key": "tok3n-Abc9Xyz7Qwe"}',
    "aws_session_token=tok3n-Abc9Xyz7Qwe",
]


@pytest.mark.parametrize("text", PATTERNS)
def test_credential_shapes_are_redacted_without_registration(text: str) -> None:
    out = logs.redact(text)
    assert "tok3n-Abc9Xyz7Qwe" not in out and "1234567890AB" not in out, out
    assert logs.REDACTED in out


def test_ordinary_messages_are_left_alone() -> None:
    for text in ("config: model.api_key_file '/etc/k' must be mode 0600", "max_tokens=300 password=None",
                 "session scan: quarantined message_3.json: truncated"):
        assert logs.redact(text) == text


def test_verbose_keeps_wire_loggers_at_info_unless_named(log_stream: io.StringIO) -> None:
    logs.setup(verbose=True, stream=log_stream)
    assert logging.getLogger("edgevoice.daemon.voice").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("strands.bidi.agent").isEnabledFor(logging.DEBUG)
    for name in WIRE:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        # botocore's routine INFO ("Found credentials in environment variables.") is not wanted on stderr
        chatty = name.split(".")[0] in logs.CHATTY_LOGGERS
        assert logging.getLogger(name).isEnabledFor(logging.INFO) is not chatty, name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    logs.setup(verbose=True, debug_loggers=["websockets", "botocore"], stream=log_stream)
    assert logging.getLogger("botocore.endpoint").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("websockets.client").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("smithy_core").isEnabledFor(logging.DEBUG)
    logs.setup(stream=log_stream)  # without -v: INFO everywhere, the named ones back too
    assert not logging.getLogger("edgevoice.daemon.voice").isEnabledFor(logging.DEBUG)


def test_uncaught_exceptions_go_through_the_filter(log_stream: io.StringIO) -> None:
    logs.setup(stream=log_stream)
    logs.register_secret(SECRET)
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError as e:
        sys.excepthook(type(e), e, e.__traceback__)
    out = log_stream.getvalue()
    assert "uncaught exception" in out and "RuntimeError: boom" in out and SECRET not in out


def test_a_model_error_that_quotes_the_key_is_redacted(log_stream: io.StringIO) -> None:
    """daemon/connection.py logs provider errors at ERROR, cut to 300 characters: the cut may fall in the key."""
    from edgevoice.daemon.connection import Connection
    from edgevoice.daemon.state import StateMachine

    logs.setup(stream=log_stream)
    logs.register_secret(SECRET)
    failed = asyncio.Event()

    class FailingAgent:
        async def run(self, inputs: list[object], outputs: list[object]) -> None:
            failed.set()
            raise ConnectionError(f"{'handshake rejected ' * 14} header {SECRET} and {SECRET}")

    async def build() -> FailingAgent:
        return FailingAgent()

    conn = Connection(build, inputs=[], outputs=[], fire=StateMachine().fire)  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(conn.run())
        await asyncio.wait_for(failed.wait(), 5)
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    out = log_stream.getvalue()
    assert "ERROR edgevoice.daemon.connection: model stopped: ConnectionError: handshake rejected" in out, out
    for piece in (SECRET, SECRET[:12], SECRET[-12:]):
        assert piece not in out, out


# --- transcripts --------------------------------------------------------------------------------------------


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def test_even_a_debug_journal_holds_no_transcript(alsa: AsoundRc, tmp_path: Path) -> None:
    """The journal is readable by `adm`; the conversation is in the 0600 session files only. `-v`: Strands'
    own loggers at DEBUG too."""
    from edgevoice.commands.demo import speak_to_raw

    raw = tmp_path / "mic.raw"
    frames = speak_to_raw("My name is Alice.", "en-us", raw)
    alsa.capture("mic", raw).playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{tmp_path / "s"}"\n')
    r = subprocess.run(
        [EDGEVOICE, "-v", "run", "--config", str(cfg), "--input-pace", "4", "--input-frames", str(frames)],
        capture_output=True, text=True, timeout=120, env=alsa.env(),
    )
    assert r.returncode == 0, r.stderr
    stored = "".join(p.read_text() for p in (tmp_path / "s").rglob("message_*.json"))
    assert "Alice" in stored  # the conversation happened and was heard
    assert "ready: first frame accepted" in r.stderr and "user transcript: " in r.stderr  # DEBUG is logged
    assert "alice" not in r.stderr.lower() and "user:" not in r.stderr and "assistant:" not in r.stderr, r.stderr


def test_no_transcript_reaches_even_a_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    from edgevoice.daemon.speaker import SpeakerOutput
    from edgevoice.daemon.state import StateMachine

    class Quiet:
        is_playing = False

        def play(self, pcm: bytes, rate: int) -> None: ...

        def flush(self) -> int:
            return 0

    speaker = SpeakerOutput(Quiet(), StateMachine())
    with caplog.at_level(logging.DEBUG):
        asyncio.run(speaker({"type": "bidi_transcript_block", "role": "user", "transcript": "My name is Alice."}))
    assert not [r for r in caplog.records if "alice" in r.getMessage().lower()]
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edgevoice.daemon.speaker"]
    assert said == [(logging.DEBUG, "user transcript: 17 characters")]
