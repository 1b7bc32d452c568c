"""A fake Nova Sonic on the wire: HTTP/2 over TLS (ALPN h2) with AWS event-stream framing, on 127.0.0.1.

The project has no HTTP/2 server library, and a fake needs very little of HTTP/2: the connection preface,
SETTINGS and their ACK, PING answers, one request stream whose DATA it reads and on which it answers
HEADERS (`:status 200`) and DATA. Request headers are never decoded (HPACK state is irrelevant when
nothing is looked up); flow control is opened wide once with WINDOW_UPDATE and SETTINGS, and the client's
own window is honoured on send. Event-stream messages are encoded and decoded with smithy_aws_event_stream;
a SigV4-signed input message (`:chunk-signature`) carries the real one as its payload. The scripted
conversation is FakeNovaSonic's (nova.py): only the transport differs.

Point the real AWS client at it with `model.endpoint = fake.url` and `fake.trust(monkeypatch)` (in this
process), or, for a daemon in a subprocess, `fake.env()`: both set SSL_CERT_FILE to the certificate, which
the model's TLS context trusts (`edgevoice.models.nova_sonic.tls_options`); `env()` adds dummy AWS
credentials. Hooks: `close()` ends the response stream (END_STREAM), `kill()` resets the TCP connection,
`hang()` stops reading and answering. Script options (`pace_s`, `tool_delay_s`) are FakeNovaSonic's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import ssl
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from smithy_aws_event_stream.events import Event, EventMessage

from tests.cloudfake import self_signed

from .base import Recorded, Turn
from .nova import FakeNovaSonic, _Output

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
BIG = 2**31 - 1


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


RESPONSE_HEADERS = b"\x88" + _literal(b"content-type", b"application/vnd.amazon.eventstream")  # 0x88: :status 200


class _Connection:
    """One HTTP/2 connection; its request stream is a Nova bidirectional stream."""

    def __init__(self, fake: WireNovaSonic, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.fake, self.reader, self.writer = fake, reader, writer
        self.stream = 0
        self.window = 65535  # the client's receive window for what we send (connection level)
        self.stream_window = 65535
        self.window_open = asyncio.Event()
        self.buffer = b""
        # The scripted conversation writes into this queue; a writer task frames and sends it.
        self.output = _Output(fake.script)
        self.ended = False

    async def run(self) -> None:
        if await self.reader.readexactly(len(PREFACE)) != PREFACE:
            return
        self.writer.write(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, BIG)))  # INITIAL_WINDOW_SIZE
        self.writer.write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", BIG - 65535)))
        sender = asyncio.create_task(self._send_output())
        try:
            while True:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & BIG
                payload = await self.reader.readexactly(length)
                await self._on_frame(kind, flags, stream, payload)
        finally:
            sender.cancel()

    async def _on_frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                if key == 4:  # the client's INITIAL_WINDOW_SIZE for our sends
                    self.stream_window += value - 65535
            self.writer.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self.writer.write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & BIG
            if stream == 0:
                self.window += increment
            else:
                self.stream_window += increment
            self.window_open.set()
        elif kind == HEADERS and not self.stream:
            self.stream = stream
            self.fake.seen.connections += 1
            self.writer.write(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS))
        elif kind == DATA and stream == self.stream:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            self.buffer += payload
            await self._take_events()
        elif kind in (RST_STREAM, GOAWAY):
            self.fake.seen.closed.append(f"client sent {'RST_STREAM' if kind == RST_STREAM else 'GOAWAY'}")
        await self.writer.drain()

    async def _take_events(self) -> None:
        while len(self.buffer) >= 4 and len(self.buffer) >= int.from_bytes(self.buffer[:4], "big"):
            size = int.from_bytes(self.buffer[:4], "big")
            raw, self.buffer = self.buffer[:size], self.buffer[size:]
            message = _decode(raw)
            if ":chunk-signature" in message.headers:  # SigV4 event signing wraps the real message
                if not message.payload:
                    continue  # the empty signed message that ends the input stream
                message = _decode(message.payload)
            event = json.loads(base64.b64decode(json.loads(message.payload)["bytes"]))["event"]
            self.fake.seen.messages.append(event)
            await self.fake.script._on_event(event, self.output)

    async def _send_output(self) -> None:
        while True:
            item = await self.output.take()
            if not isinstance(item, bytes):  # the end of the stream (close())
                self.writer.write(frame(DATA, END_STREAM, self.stream))
                await self.writer.drain()
                return
            payload = json.dumps({"bytes": base64.b64encode(item).decode()}).encode()
            headers = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}
            data = EventMessage(headers=headers, payload=payload).encode()
            while min(self.window, self.stream_window) < len(data):
                self.window_open.clear()
                await self.window_open.wait()
            self.window -= len(data)
            self.stream_window -= len(data)
            for i in range(0, len(data), 16384):  # the default SETTINGS_MAX_FRAME_SIZE
                self.writer.write(frame(DATA, 0, self.stream, data[i : i + 16384]))
            await self.writer.drain()


def _decode(raw: bytes) -> EventMessage:
    event = Event.decode(io.BytesIO(raw))
    assert event is not None
    return event.message


class WireNovaSonic:
    """HTTP/2 + event-stream server on a thread of its own; the conversation is a FakeNovaSonic script."""

    def __init__(self, turns: list[Turn] | None = None, directory: Path | None = None, **script: float) -> None:
        self.script = FakeNovaSonic(turns, **script)
        self.seen: Recorded = self.script.seen
        self.audio = self.script.audio
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fake-nova-")
        self.cert, key = self_signed(directory or Path(self._tmp.name))  # type: ignore[union-attr]
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(self.cert, key)
        self._tls.set_alpn_protocols(["h2"])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: list[_Connection] = []
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def trust(self, monkeypatch: pytest.MonkeyPatch) -> WireNovaSonic:
        """Trust this fake's certificate (and nothing else) in this process: SSL_CERT_FILE, which the model's
        TLS context reads when it is made (`edgevoice.models.nova_sonic.tls_options`)."""
        monkeypatch.setenv("SSL_CERT_FILE", str(self.cert))
        return self

    def env(self) -> dict[str, str]:
        """Environment for a daemon in a subprocess: trust this fake's certificate, dummy credentials (the fake
        verifies no signature), and no instance-metadata lookup (which would stall without a network)."""
        return {
            "SSL_CERT_FILE": str(self.cert),
            "AWS_ACCESS_KEY_ID": "AKIAFAKEEDGEVOICE",
            "AWS_SECRET_ACCESS_KEY": "fake-secret",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> WireNovaSonic:
        self._thread = threading.Thread(target=self._run, name="WireNovaSonic", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._tls))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._conns.append(conn)
        try:
            await conn.run()
        except Exception as e:
            self.seen.closed.append(f"{type(e).__name__}: {e}")
        finally:
            writer.close()

    def _call(self, fn: Any) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def close(self) -> None:
        """END_STREAM on every response stream: what a service ending the stream looks like."""
        self._call(lambda: [c.output.queue.put_nowait(None) for c in self._conns])

    def kill(self) -> None:
        """TCP RST on every connection."""

        def kill_all() -> None:
            for c in self._conns:
                c.output.dead = True  # a paced answer stops instead of queueing into the dead connection
                sock = c.writer.get_extra_info("socket")
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.writer.transport.abort()

        self._call(kill_all)

    def hang(self) -> None:
        """Stop reading and answering (no PING ACK, no window updates, no events)."""

        def hang_all() -> None:
            self.script.hang()
            for c in self._conns:
                c.writer.transport.pause_reading()

        self._call(hang_all)

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for c in self._conns:
                c.writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=5) if tasks else None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
        if self._tmp is not None:
            self._tmp.cleanup()
