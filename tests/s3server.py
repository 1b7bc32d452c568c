"""A real S3 endpoint on 127.0.0.1 for tests: moto's server in a thread, boto3 pointed at it.

    with s3_server() as endpoint:
        s3 = client(endpoint)
        s3.create_bucket(Bucket="edgevoice-test")

Credentials are dummies passed explicitly, so nothing from the environment or ~/.aws is used
and no request can leave the machine.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

REGION = "us-east-1"


@contextmanager
def s3_server() -> Iterator[str]:
    """Starts moto on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_process(*, timeout_s: float = 30.0) -> Iterator[str]:
    """Starts moto's server as a separate process (so it does not share the GIL with the code under
    test or a benchmark); yields its endpoint URL once it answers; terminates it (then kills) on exit."""
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    # The port is picked by binding 0 and released before moto binds it; another process could take
    # it in between, so a moto that dies at startup gets a few more tries on fresh ports.
    for attempt in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(
                [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            try:
                if _wait_until_answers(proc, endpoint, time.monotonic() + timeout_s):
                    yield endpoint
                    return
                log.seek(0)
                output = log.read().decode(errors="replace")
                if proc.poll() is None or attempt == 2:
                    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout_s} s:\n{output}")
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def _wait_until_answers(proc: subprocess.Popen[bytes], endpoint: str, deadline: float) -> bool:
    """Polls GET / until moto answers (True), the process exits or the deadline passes (False)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    return False


def boto_session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def client(endpoint: str) -> Any:
    return boto_session().client("s3", endpoint_url=endpoint)


def upload_tree(s3: Any, bucket: str, prefix: str, root: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Uploads every file under `root` to `prefix/<path relative to root.parent>`; returns the keys.
    Top-level names inside `root` listed in `skip` are left out."""
    keys = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        key = "/".join(filter(None, [prefix.strip("/"), root.name, *rel.parts]))
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys
