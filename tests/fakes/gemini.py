"""A fake Gemini Live endpoint: websocket over TLS (self-signed certificate for 127.0.0.1) on the path
google-genai dials, JSON messages in the API's camelCase (see /work/shared/providers.md).

Point a model at it with `model.endpoint = fake.url` and `SSL_CERT_FILE = fake.cert` (google-genai reads
SSL_CERT_FILE when the client is built). Each scripted Turn plays once `trigger_bytes` of realtime input
audio arrived, or a client text turn.

Sessions as Google keeps them: each set-up opens a session, or resumes one with a handle the fake issued
(`sessionResumptionUpdate`, sent after set-up and after every completed turn when the client asked for
session resumption); a resume restores the session as it was when that handle was issued. A resume is
refused, with a 1011 close, for a handle the fake never issued, while the session's previous socket is
still open (as Google does), or always with `refuse_resumes`. Every session keeps its `context`: the
history the client seeded (`clientContent` before the first audio, with `historyConfig`), and each turn's
user and assistant text. Transcriptions are sent only when the set-up asked for them. `pong_delay` answers
keepalive pings late (Google's pongs take 8-30 s); `stall_answers` stops each answer after its first audio
chunk, so a test can drop the connection mid-answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from tests.cloudfake import self_signed

from .base import ThreadedFake, Turn, b64, tone

OUTPUT_RATE = 24000  # Gemini Live speaks 24 kHz PCM
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


@dataclass
class Session:
    """One Gemini session: what its model knows, and the socket that holds it."""

    context: list[tuple[str, str]] = field(default_factory=list)  # (role, text): seeded history, then turns
    socket: ServerConnection | None = None


@dataclass
class _Link:
    """One connection's set-up."""

    session: Session
    resumable: bool
    transcribe_in: bool
    transcribe_out: bool
    history: bool  # clientContent before the first audio is initial history
    heard_audio: bool = False


class FakeGeminiLive(ThreadedFake):
    audio = tone(OUTPUT_RATE)

    def __init__(self, turns: list[Turn] | None = None, directory: Path | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fake-gemini-")
        where = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        self.cert, key = self_signed(where)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        super().__init__(turns, tls=context)
        self._n = 0
        self.sessions: list[Session] = []
        self.setups: list[dict[str, Any]] = []  # every set-up message, as sent
        self.issued: list[str] = []  # every resumption handle sent, in order
        self.resumed: list[str] = []  # handles a set-up resumed with
        self.refused: list[tuple[str, str]] = []  # (handle, why) for every refused resume
        self.histories: list[list[tuple[str, str]]] = []  # initial history of each connection that sent one
        self.pongs = 0  # keepalive pings answered
        self.refuse_resumes = False
        self.refuse_after_setup = False  # refuse with setupComplete first, then the close
        self.pong_delay = 0.0
        self.stall_answers = False
        self.transcription_finished = True  # False: no `finished` flag, Strands closes the user's words at turnComplete
        self._handles: dict[str, tuple[Session, int]] = {}  # handle -> its session, and the context it covers
        self._links: dict[int, _Link] = {}

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def open_sockets(self) -> int:
        """Sessions whose socket is open, seen from the fake's side."""
        return sum(1 for s in self.sessions if s.socket is not None and s.socket.state is not State.CLOSED)

    async def converse(self, ws: ServerConnection) -> None:
        self._slow_pongs(ws)
        pending = 0
        waiting_tool: Turn | None = None
        try:
            async for raw in ws:
                msg = {_snake(k): v for k, v in json.loads(raw).items()}
                self.seen.messages.append(msg)
                link = self._links.get(id(ws))
                if "setup" in msg:
                    if not await self.set_up(ws, msg["setup"]):
                        return
                elif link is None:
                    await ws.close(1007, "setup must come first")
                    return
                elif "realtime_input" in msg:
                    link.heard_audio = True
                    audio = msg["realtime_input"].get("audio") or {}
                    data = audio.get("data", "")
                    # google-genai sends URL-safe base64 (real speech has '-' and '_' in it), unpadded at times.
                    pcm = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
                    self.seen.audio_in += len(pcm)
                    pending += len(pcm)
                    if self.turn_ends(pending, pcm, 16000):
                        pending = 0
                        turn = self.next_turn()
                        assert turn is not None
                        waiting_tool = await self.play(ws, turn)
                elif "tool_response" in msg:
                    body = msg["tool_response"]
                    self.seen.tool_results.extend(body.get("function_responses") or body.get("functionResponses") or [])
                    if waiting_tool is not None:
                        turn, waiting_tool = waiting_tool, None
                        await self.answer(ws, turn)
                elif "client_content" in msg and link.history and not link.heard_audio:
                    turns = msg["client_content"].get("turns") or []
                    seeded = [(t.get("role", ""), p.get("text", "")) for t in turns for p in t.get("parts") or []]
                    self.histories.append(seeded)
                    link.session.context.extend(seeded)
                    link.history = False
                elif "client_content" in msg and (turn := self.next_turn()):
                    waiting_tool = await self.play(ws, turn, spoken=False)
        finally:
            self._links.pop(id(ws), None)

    async def set_up(self, ws: ServerConnection, setup: dict[str, Any]) -> bool:
        """Open or resume a session for this connection; False when the resume was refused (and closed)."""
        self.setups.append(setup)
        resumption = setup.get("sessionResumption")
        handle = (resumption or {}).get("handle")
        if handle:
            session, covered = self._handles.get(handle, (None, 0))
            old = session.socket if session is not None else None
            why = (
                "unknown session handle"
                if session is None
                else "session handle expired"
                if self.refuse_resumes
                else "session is still open on another connection"
                if old is not None and old.state is not State.CLOSED
                else ""
            )
            if why:
                self.refused.append((handle, why))
                if self.refuse_after_setup:
                    await self._send(ws, {"setupComplete": {}})
                await ws.close(1011, why)
                return False
            assert session is not None
            self.resumed.append(handle)
            del session.context[covered:]  # the session as it was when the handle was issued
        else:
            session = Session()
            self.sessions.append(session)
        session.socket = ws
        link = _Link(
            session,
            resumable=resumption is not None,
            transcribe_in="inputAudioTranscription" in setup,
            transcribe_out="outputAudioTranscription" in setup,
            history=bool(setup.get("historyConfig")),
        )
        self._links[id(ws)] = link
        await self._send(ws, {"setupComplete": {}})
        await self._new_handle(ws, link)
        return True

    async def _new_handle(self, ws: ServerConnection, link: _Link) -> None:
        if not link.resumable:
            return
        handle = f"handle-{self.sessions.index(link.session)}-{len(self.issued)}"
        self._handles[handle] = (link.session, len(link.session.context))
        self.issued.append(handle)
        await self._send(ws, {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    def _slow_pongs(self, ws: ServerConnection) -> None:
        """Count keepalive pongs, and send them `pong_delay` late: websockets answers pings inside its
        protocol, so the pong frame is held back there."""
        protocol = ws.protocol
        send_frame = protocol.send_frame
        loop = asyncio.get_running_loop()

        def later(frame: Frame) -> None:
            if protocol.state is State.OPEN:
                send_frame(frame)
                ws.send_data()

        def send(frame: Frame) -> None:
            if frame.opcode is Opcode.PONG:
                self.pongs += 1
                if self.pong_delay > 0:
                    loop.call_later(self.pong_delay, later, frame)
                    return
            send_frame(frame)

        protocol.send_frame = send  # type: ignore[method-assign]

    async def _send(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        await self.pause()
        await ws.send(json.dumps(message))

    async def _content(self, ws: ServerConnection, **content: Any) -> None:
        await self._send(ws, {"serverContent": content})

    def _link(self, ws: ServerConnection) -> _Link:
        return self._links[id(ws)]

    async def play(self, ws: ServerConnection, turn: Turn, *, spoken: bool = True) -> Turn | None:
        """Play `turn`; returns it when the answer waits for a tool response."""
        link = self._link(ws)
        link.session.context.append(("user", turn.user))
        if spoken and link.transcribe_in:
            await self._content(ws, inputTranscription={"text": turn.user, "finished": self.transcription_finished})
        if turn.tool is not None:
            self._n += 1
            name, args = turn.tool
            call = {"id": f"call_{self._n}", "name": name, "args": args}
            await self._send(ws, {"toolCall": {"functionCalls": [call]}})
            return turn
        await self.answer(ws, turn)
        return None

    async def answer(self, ws: ServerConnection, turn: Turn) -> None:
        link = self._link(ws)
        if link.transcribe_out:
            await self._content(ws, outputTranscription={"text": turn.assistant})
        for _ in range(1 if turn.interrupt or self.stall_answers else turn.audio_chunks):
            part = {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": b64(self.audio)}}
            await self._content(ws, modelTurn={"parts": [part]})
        if self.stall_answers:
            await ws.wait_closed()  # the rest of the answer never comes; the test drops the connection
            return
        if turn.interrupt:
            # Server VAD heard the user over the answer: `interrupted` (Strands' barge-in), the user's words,
            # then the cut-off turn completes.
            await self._content(ws, interrupted=True)
            if link.transcribe_in:
                words = {"text": turn.barge_in_user, "finished": self.transcription_finished}
                await self._content(ws, inputTranscription=words)
        await self._content(ws, turnComplete=True)
        link.session.context.append(("assistant", turn.assistant))
        self.seen.turns_played += 1
        await self._new_handle(ws, link)
