"""The fault-injecting proxy, between real boto3 and a real moto S3 server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from tests.s3proxy import FaultProxy, _RequestParser
from tests.s3server import boto_session, client, moto_process, s3_server

BUCKET = "edgevoice-proxy"
pytestmark = pytest.mark.timeout(30)


def fragile(endpoint: str, read_timeout: float = 2) -> Any:
    """A client that gives up fast and never retries, so each fault shows as one exception.
    (botocore's `max_attempts` counts retries, not attempts: max_attempts=1 would send twice.)"""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=read_timeout)
    return boto_session().client("s3", endpoint_url=endpoint, config=config)


def keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with s3_server() as endpoint:
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    for key in keys(client(moto)):
        client(moto).delete_object(Bucket=BUCKET, Key=key)
    with FaultProxy.to(moto) as p:
        yield p


class KeepAlive(BaseHTTPRequestHandler):
    """A minimal HTTP/1.1 server that keeps connections open, unlike moto (werkzeug closes after every
    response): the only way to see what faults do to connections botocore keeps in its pool."""

    protocol_version = "HTTP/1.1"
    seen: list[str]

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def kept() -> Iterator[tuple[FaultProxy, list[str]]]:
    """A proxy in front of a KeepAlive server, and the requests that server has seen."""
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (KeepAlive,), {"seen": seen}))
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    try:
        with FaultProxy("127.0.0.1", server.server_address[1]) as p:
            yield p, seen
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=5)


def proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("s3proxy-")]


def test_pass_round_trip_and_counters(proxy: FaultProxy) -> None:
    s3 = fragile(proxy.endpoint)
    s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"hello")
    assert s3.get_object(Bucket=BUCKET, Key="a.txt")["Body"].read() == b"hello"
    assert proxy.methods["PUT"] == 1 and proxy.methods["GET"] == 1 and proxy.requests == 2
    assert proxy.connections == 2  # moto (werkzeug) sends "Connection: close" after every response
    assert proxy.bytes_up > 5 and proxy.bytes_down > 5


def test_refuse_is_a_real_connection_refused_and_recovers(proxy: FaultProxy, moto: str) -> None:
    s3 = fragile(proxy.endpoint)
    s3.put_object(Bucket=BUCKET, Key="before", Body=b"1")
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", proxy.port), timeout=1):
        pass
    started = time.monotonic()
    with pytest.raises(EndpointConnectionError):
        s3.put_object(Bucket=BUCKET, Key="during", Body=b"2")
    assert time.monotonic() - started < 1
    proxy.pass_through()  # re-binds the same port
    s3.put_object(Bucket=BUCKET, Key="after", Body=b"3")
    assert sorted(keys(client(moto))) == ["after", "before"]


def reset_cause(error: ConnectionClosedError) -> BaseException:
    """The socket error under botocore's ConnectionClosedError (urllib3's ProtocolError wraps it)."""
    cause: BaseException = error.kwargs["error"].args[1]
    return cause


def test_reset_gives_connection_reset(proxy: FaultProxy, moto: str) -> None:
    s3 = fragile(proxy.endpoint)
    proxy.reset()
    with pytest.raises(ConnectionClosedError) as caught:
        s3.put_object(Bucket=BUCKET, Key="x", Body=b"data")
    assert isinstance(reset_cause(caught.value), ConnectionResetError)
    assert proxy.bytes_up == 0  # nothing reached moto
    proxy.pass_through()
    s3.put_object(Bucket=BUCKET, Key="z", Body=b"data")
    assert keys(client(moto)) == ["z"]


def test_faults_reach_kept_alive_connections(kept: tuple[FaultProxy, list[str]]) -> None:
    proxy, seen = kept
    s3 = fragile(proxy.endpoint, read_timeout=1)
    s3.head_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="a", Body=b"1")
    assert proxy.connections == 1 and seen == [f"HEAD /{BUCKET}", f"PUT /{BUCKET}/a"]

    proxy.http_error(503)  # at the next request of the pooled connection
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=BUCKET, Key="b", Body=b"2")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    proxy.pass_through()
    s3.put_object(Bucket=BUCKET, Key="c", Body=b"3")  # "Connection: close" made botocore reconnect
    s3.head_bucket(Bucket=BUCKET)
    assert proxy.connections == 2

    proxy.stall()  # the pooled connection stalls too
    with pytest.raises(ReadTimeoutError):
        s3.head_bucket(Bucket=BUCKET)
    proxy.pass_through()
    s3.head_bucket(Bucket=BUCKET)

    proxy.reset()  # the idle pooled connection is reset at once; botocore's next connection is reset on use
    with pytest.raises(ConnectionClosedError) as reset:
        s3.put_object(Bucket=BUCKET, Key="d", Body=b"4")
    assert isinstance(reset_cause(reset.value), ConnectionResetError)
    proxy.pass_through()
    s3.head_bucket(Bucket=BUCKET)

    proxy.refuse()  # drops the pooled connection too, so botocore has to connect, and is refused
    with pytest.raises(EndpointConnectionError):
        s3.head_bucket(Bucket=BUCKET)
    assert seen.count(f"PUT /{BUCKET}/b") == 0 and seen.count(f"PUT /{BUCKET}/d") == 0


def test_latency_costs_one_round_trip_per_exchange(kept: tuple[FaultProxy, list[str]]) -> None:
    proxy, _ = kept
    s3 = fragile(proxy.endpoint)
    s3.head_bucket(Bucket=BUCKET)  # opens the pooled connection at full speed
    proxy.latency(0.2)
    started = time.monotonic()
    s3.head_bucket(Bucket=BUCKET)  # kept-alive connection: request and response, one round trip
    assert 0.2 <= time.monotonic() - started < 0.3
    fresh = fragile(proxy.endpoint)
    started = time.monotonic()
    fresh.head_bucket(Bucket=BUCKET)  # a new connection adds one round trip for its handshake
    assert 0.4 <= time.monotonic() - started < 0.5
    started = time.monotonic()
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")  # Expect: 100-continue, so two round trips
    assert 0.4 <= time.monotonic() - started < 0.5


def test_reset_mid_body_forwards_exactly_the_budget(proxy: FaultProxy, moto: str) -> None:
    s3 = fragile(proxy.endpoint)
    proxy.reset(after_bytes=2000)
    with pytest.raises(ConnectionClosedError):
        s3.put_object(Bucket=BUCKET, Key="big", Body=b"x" * 200_000)
    assert proxy.bytes_up == 2000 and proxy.methods["PUT"] == 1
    assert keys(client(moto)) == []


def test_stall_times_out_then_resumes(proxy: FaultProxy) -> None:
    s3 = fragile(proxy.endpoint, read_timeout=1)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        s3.get_object(Bucket=BUCKET, Key="k")
    assert time.monotonic() - started < 2.5

    # A request caught in a stall completes once traffic flows again (like a network that recovers).
    patient = fragile(proxy.endpoint, read_timeout=5)
    got: list[bytes] = []
    waiter = threading.Thread(target=lambda: got.append(patient.get_object(Bucket=BUCKET, Key="k")["Body"].read()))
    waiter.start()
    time.sleep(0.5)
    assert not got
    proxy.pass_through()
    waiter.join(timeout=5)
    assert got == [b"v"]


@pytest.mark.parametrize(("status", "code"), [(503, "ServiceUnavailable"), (500, "InternalError")])
def test_http_error_answers_without_forwarding(proxy: FaultProxy, moto: str, status: int, code: str) -> None:
    s3 = fragile(proxy.endpoint)
    s3.head_bucket(Bucket=BUCKET)  # the error must also reach kept-alive connections
    proxy.http_error(status)
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=BUCKET, Key="nope", Body=b"x" * 100_000)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["Error"]["Code"] == code
    with pytest.raises(ClientError) as head:  # HEAD: no body, botocore still sees the status
        s3.head_object(Bucket=BUCKET, Key="nope")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert keys(client(moto)) == []
    proxy.pass_through()
    s3.put_object(Bucket=BUCKET, Key="yes", Body=b"x")
    assert keys(client(moto)) == ["yes"]


def test_http_error_with_a_file_body_and_100_continue(proxy: FaultProxy, moto: str, tmp_path: Any) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"y" * 300_000)
    s3 = fragile(proxy.endpoint)
    proxy.http_error(503)
    with path.open("rb") as body, pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=BUCKET, Key="file", Body=body)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert keys(client(moto)) == []


def test_http_error_waits_for_a_whole_chunked_body(proxy: FaultProxy, moto: str) -> None:
    request = (
        f"PUT /{BUCKET}/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n"
    ).encode()
    proxy.http_error(503)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as s:
        for i in range(0, len(request) - 2, 7):  # in small pieces, all but the final CRLF
            s.sendall(request[i : min(i + 7, len(request) - 2)])
            time.sleep(0.005)
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):  # no answer before the request is complete
            s.recv(1)
        s.settimeout(3)
        s.sendall(request[-2:])
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"<Code>ServiceUnavailable</Code>" in answer and b"Connection: close" in answer
    assert proxy.requests == 1 and keys(client(moto)) == []


def test_request_parser_finds_boundaries_however_split() -> None:
    stream = (
        b"\r\nPUT /b/k HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b/k HTTP/1.1\r\n\r\n"
        b"POST /b HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    )
    for step in (1, 2, 5, len(stream)):
        parser, data = _RequestParser(), stream
        events: list[tuple[str, str | int]] = []
        pos = 0
        while data:
            piece = data[:step]
            n, head, end = parser.feed(piece)
            pos, data = pos + n, data[n:]
            events += [("head", parser.method)] if head else []
            events += [("end", pos)] if end else []
        ends = [stream.index(b"GET"), stream.index(b"POST"), len(stream)]
        assert events == [
            ("head", "PUT"), ("end", ends[0]), ("head", "GET"), ("end", ends[1]), ("head", "POST"), ("end", ends[2])
        ]


def test_stop_leaves_no_threads_even_mid_stall(moto: str) -> None:
    proxy = FaultProxy.to(moto).start()
    s3 = fragile(proxy.endpoint, read_timeout=10)
    s3.head_bucket(Bucket=BUCKET)
    proxy.stall()
    errors: list[Exception] = []

    def stuck() -> None:
        try:
            s3.head_bucket(Bucket=BUCKET)
        except Exception as e:
            errors.append(e)

    waiter = threading.Thread(target=stuck)
    waiter.start()
    time.sleep(0.3)
    assert len(proxy_threads()) == 2  # the acceptor and the one connection
    started = time.monotonic()
    proxy.stop()
    proxy.stop()  # idempotent
    assert time.monotonic() - started < 1
    assert proxy_threads() == []
    waiter.join(timeout=5)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionClosedError)  # closed by stop(), not retried


def test_moto_process_round_trip() -> None:
    with moto_process() as endpoint:
        s3 = client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="p", Body=b"process")
        assert s3.get_object(Bucket=BUCKET, Key="p")["Body"].read() == b"process"
        with FaultProxy.to(endpoint) as proxy:
            assert client(proxy.endpoint).get_object(Bucket=BUCKET, Key="p")["Body"].read() == b"process"
    with pytest.raises(EndpointConnectionError):
        fragile(endpoint).list_buckets()
