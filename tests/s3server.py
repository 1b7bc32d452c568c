"""A real S3 endpoint on 127.0.0.1 for tests: moto's server in a thread, boto3 pointed at it.

    with s3_server() as endpoint:
        s3 = client(endpoint)
        s3.create_bucket(Bucket="edgevoice-test")

Credentials are dummies passed explicitly, so nothing from the environment or ~/.aws is used
and no request can leave the machine.
"""

from __future__ import annotations

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
