"""Gemini Live whose conversation survives reconnects and daemon restarts. Imported only when that provider is chosen.

What Strands 1.62's `GoogleGeminiLiveModel` already does: it turns Gemini's input and output transcriptions
into transcript events, which `BidiAgent` stores as user and assistant messages; a fresh `start()` replays
the text of `messages` as initial history (`historyConfig`); its own `restart()` (the 540 s rotation, a
`goAway`) resumes with the latest session-resumption handle. What it does not do, and this module adds:

- A reconnect of ours (the daemon stops the agent and starts it again, or builds a new agent and model
  after a stop it abandoned) goes through `start()`, which drops the handle: every reconnect was a new
  Gemini session. The handle now lives in a `ResumeState` shared by every model the factory builds for the
  same endpoint, model and store, and `start()` resumes with it, after closing the connection that still
  holds the session (Gemini refuses a resume while the old socket is open).
- A resume is only attempted while the handle covers the whole stored conversation: it is marked with the
  last stored text message when it arrives, and a start whose history has moved on since (a turn cut off
  by the drop, turns answered elsewhere) starts a new session with the history instead.
- A refused resume (close during set-up, or right after it) drops the handle; the next start is new.
- The history replayed to a new session is cleaned (text of user and assistant messages only, no empty
  parts, which the API rejects) and capped to the newest `HISTORY_MAX_CHARS`, starting at a user turn.
- A connection that drops mid-turn stores what was transcribed so far rather than Strands' placeholder.
- websockets' default keepalive (20 s ping timeout) closes the connection itself (1011) when Gemini's
  pongs are slow, which they are (8-30 s): pings stay on (they keep NAT mappings alive) with a looser timeout.
- Input and output transcription are always requested: without them nothing of the conversation is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from google.genai import errors as genai_errors
from google.genai import types as genai_types
from google.genai.types import LiveServerMessage
from strands.bidi.models.google import GoogleGeminiLiveModel, _TurnState
from strands.bidi.types.events import (
    BidiOutputEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)
from strands.types.content import Messages
from strands.types.tools import ToolSpec
from websockets.protocol import State

log = logging.getLogger(__name__)

PING_INTERVAL_S = 20.0
"""websockets' default: often enough to keep a home router's NAT mapping of an idle connection."""
PING_TIMEOUT_S = 120.0
"""websockets' default is 20 s, and Gemini's pongs take 8-30 s; a dead idle link is still noticed in minutes."""
HISTORY_MAX_CHARS = 60_000
"""Newest transcript text replayed to a new session (about 15k tokens of Gemini's 128k window)."""
PREVIOUS_CLOSE_S = 2.0
"""How long a start waits for the previous connection's socket to close after aborting it."""


@dataclass
class ResumeState:
    """One conversation's Gemini session, shared by every model object the factory builds for it."""

    handle: str | None = None
    """The latest session-resumption handle Gemini sent (None: the next start is a new session)."""
    mark: str | None = None
    """Tracking id of the last stored text message when `handle` arrived: what the handle covers."""
    socket: Any = None
    """The websocket of the connection that holds the session, to close before a resume."""


_STATES: dict[tuple[str, ...], ResumeState] = {}
_STATES_LOCK = threading.Lock()  # make_model runs on a worker thread (daemon/agents.py)


def resume_state(*key: str) -> ResumeState:
    """The process-wide `ResumeState` for `key` (endpoint, model id, store, agent id)."""
    with _STATES_LOCK:
        return _STATES.setdefault(key, ResumeState())


def last_text_id(messages: Messages) -> str | None:
    """Tracking id of the newest message with text (a pending transcript has none yet)."""
    for message in reversed(messages):
        if any(block.get("text") for block in message["content"]):
            tracking_id = message.get("tracking_id")
            return str(tracking_id) if tracking_id else None
    return None


def replay_history(messages: Messages) -> Messages:
    """What a new session is given as history: the non-empty text of user and assistant messages (tool
    exchanges and reasoning are left out, as Strands does; the spoken answers carry their outcome), the
    newest `HISTORY_MAX_CHARS` of it in whole messages, starting at a user turn."""
    turns: Messages = []
    for message in messages:
        texts = [text for block in message["content"] if (text := block.get("text")) and text.strip()]
        if texts and message["role"] in ("user", "assistant"):
            turns.append({"role": message["role"], "content": [{"text": text} for text in texts]})
    first, size = len(turns), 0
    while first > 0:
        size += sum(len(block.get("text") or "") for block in turns[first - 1]["content"])
        if size > HISTORY_MAX_CHARS:
            break
        first -= 1
    # A history that opens with the model's answer reads as the model talking to itself.
    while first < len(turns) and turns[first]["role"] != "user":
        first += 1
    return turns[first:]


class GeminiLiveModel(GoogleGeminiLiveModel):
    """GoogleGeminiLiveModel that keeps its session across our reconnects (see the module's docstring)."""

    def __init__(self, *, resume: ResumeState | None = None, **kwargs: Any) -> None:
        client_args = dict(kwargs.pop("client_args", None) or {})
        client_args["http_options"] = _http_options(client_args.get("http_options"))
        super().__init__(client_args=client_args, **kwargs)
        # After super().__init__: Strands clears `_live_session_handle` there, which must not reach the
        # shared state (a model built after an abandoned stop would forget the session).
        self._resume = resume or ResumeState()
        self._history: Messages = []  # the agent's own list, read when a handle arrives
        # Per connection, keyed by the connection's `_TurnState` (Strands binds each reader to its own, so a
        # reader still draining after a restart cannot touch its successor): content id -> (role, has text).
        self._open_transcripts: dict[int, dict[str, tuple[Any, bool]]] = {}
        self._unconfirmed: _TurnState | None = None  # the resumed connection that has not said anything yet

    # Strands reads and writes the handle here (set on each resumable update, cleared on a fresh start
    # and a refused resume); all of it goes to the shared state.
    @property
    def _live_session_handle(self) -> str | None:
        resume: ResumeState | None = self.__dict__.get("_resume")
        return resume.handle if resume is not None else None

    @_live_session_handle.setter
    def _live_session_handle(self, handle: str | None) -> None:
        resume: ResumeState | None = self.__dict__.get("_resume")
        if resume is None or handle == resume.handle:
            return
        resume.handle = handle
        resume.mark = last_text_id(self._history) if handle is not None else None

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        if messages is not None:
            self._history = messages
        if "live_session_handle" in kwargs:  # Strands' own restart() resuming; it falls back itself
            await self._close_previous()
            await super().start(system_prompt, tools, messages, **kwargs)
            self._hold_socket()
            return
        state = self._resume
        if state.handle is not None and state.mark == last_text_id(self._history):
            if await self._resume_session(system_prompt, tools, state.handle, **kwargs):
                return
        elif state.handle is not None:
            log.info("gemini: the store holds turns the resumption handle does not cover; starting a new session")
        history = replay_history(self._history)
        await super().start(system_prompt, tools, history, **kwargs)
        self._hold_socket()
        log.info("gemini: new session, %d stored messages replayed as history", len(history))

    async def _resume_session(
        self, system_prompt: str | None, tools: list[ToolSpec] | None, handle: str, **kwargs: Any
    ) -> bool:
        """Resume with `handle`: True when Gemini took it. A refusal (the server closing the set-up) drops
        the handle; a network failure is raised with the handle kept for the next attempt."""
        await self._close_previous()
        try:
            await super().start(system_prompt, tools, None, live_session_handle=handle, **kwargs)
        except genai_errors.APIError as e:
            log.warning("gemini: resume refused (close code %s); starting a new session", e.code)
            self._live_session_handle = None
            await self._teardown_after_failed_resume()
            return False
        except Exception:  # the network, not Gemini: keep the handle for the next attempt
            await self._teardown_after_failed_resume()
            raise
        self._hold_socket()
        self._unconfirmed = self._turn_state
        log.info("gemini: resumed the session")
        return True

    def _hold_socket(self) -> None:
        self._resume.socket = getattr(self._live_session, "_ws", None)

    async def _close_previous(self) -> None:
        """Close the socket that still holds the session: after a stop we abandoned it may still be open,
        and Gemini refuses a resume until it is closed. Aborted, not closed politely: its peer may be the
        reason the stop hung."""
        socket, self._resume.socket = self._resume.socket, None
        if socket is None or socket.state is State.CLOSED:
            return
        log.info("gemini: closing the previous connection before resuming")
        socket.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.wait_closed(), PREVIOUS_CLOSE_S)

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        turn_state = self._turn_state  # the one Strands' reader binds to below, in the same step
        self._open_transcripts[id(turn_state)] = {}
        try:
            async for event in super().receive():
                yield event
        except Exception:
            # The connection dropped. Strands would store each open transcript as "[Transcript
            # unavailable.]"; close the ones that have text so the store keeps what was said.
            for content_id, (role, has_text) in self._open_transcripts.pop(id(turn_state), {}).items():
                if has_text:
                    yield BidiTranscriptStopEvent(role, content_id=content_id)
            if self._unconfirmed is turn_state:
                # Closed before saying anything after a resume: a refusal after set-up. Resuming again
                # would be refused again, for ever.
                log.warning("gemini: the resumed session closed at once; the next start is a new session")
                self._live_session_handle = None
            raise
        finally:
            self._open_transcripts.pop(id(turn_state), None)
            if self._unconfirmed is turn_state:
                self._unconfirmed = None

    def _convert_gemini_live_event(self, message: LiveServerMessage, turn_state: _TurnState) -> list[BidiOutputEvent]:
        if self._unconfirmed is turn_state:
            self._unconfirmed = None
        events = super()._convert_gemini_live_event(message, turn_state)
        opened = self._open_transcripts.get(id(turn_state))
        if opened is None:  # not read through receive() (never, in Strands 1.62)
            return events
        for event in events:
            if isinstance(event, BidiTranscriptStartEvent):
                opened[event.content_id] = (event.role, False)
            elif isinstance(event, BidiTranscriptDeltaEvent) and event.content_id in opened:
                opened[event.content_id] = (event.role, True)
            elif isinstance(event, BidiTranscriptStopEvent):
                opened.pop(event.content_id, None)
        return events

    def _build_live_config(
        self, system_prompt: str | None = None, tools: list[ToolSpec] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        config = super()._build_live_config(system_prompt, tools, **kwargs)
        # Model params could switch these off; without them nothing is stored, and no handle ever comes.
        for key in ("input_audio_transcription", "output_audio_transcription"):
            if config.get(key) is None:
                config[key] = {}
        if config.get("session_resumption") is None:
            config["session_resumption"] = {"handle": kwargs.get("live_session_handle")}
        return config


def _http_options(http_options: Any) -> Any:
    """`http_options` with websockets' keepalive loosened, and one TLS context for all of google-genai's
    connections. google-genai hands `async_client_args` keys that `websockets.connect` takes to it (and
    filters them out of its HTTP clients); ours yield to the caller's. Left alone, every client it builds
    (one per reconnect here) loads the CA bundle twice, once for its HTTP clients and once for the websocket
    (about 0.5 MB each on x86); `_tls_context` is made once, trusting what `castore.trust_store` picks."""
    import certifi

    from .castore import trust_store

    tls = _tls_context(*(trust_store() or (certifi.where(), None)))
    keepalive = {"ping_interval": PING_INTERVAL_S, "ping_timeout": PING_TIMEOUT_S, "ssl": tls}
    if isinstance(http_options, genai_types.HttpOptions):
        args = {**keepalive, **(http_options.async_client_args or {})}
        sync_args = {"verify": tls, **(http_options.client_args or {})}
        return http_options.model_copy(update={"async_client_args": args, "client_args": sync_args})
    options = dict(http_options or {})
    options["async_client_args"] = {**keepalive, **(options.get("async_client_args") or {})}
    options["client_args"] = {"verify": tls, **(options.get("client_args") or {})}
    return options


@functools.cache
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """A verifying client context like google-genai's (which trusts certifi's bundle, or SSL_CERT_FILE and
    SSL_CERT_DIR); made once per trust store."""
    return ssl.create_default_context(cafile=cafile, capath=capath)
