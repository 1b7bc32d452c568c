"""`edgevoice sync pull`: a session recorded by a real BidiAgent (offline model), uploaded by the real sync
service to moto on 127.0.0.1, and brought back into another store, driven through `edgevoice.cli.main`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.config import Config

from edgevoice import config, logs
from edgevoice.cli import main
from edgevoice.session.atomic import write_bytes
from edgevoice.session.layout import session_dir
from edgevoice.session.lock import lock_store
from edgevoice.sync import state as sync_state
from edgevoice.sync.bucket import Bucket, make_client
from edgevoice.sync.names import device_id
from edgevoice.sync.service import Report, Syncer
from tests import talk
from tests.s3server import boto_session, client, s3_server

MESSAGES = "agents/agent_edgevoice/messages"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as ep:
        yield ep


@pytest.fixture(autouse=True)
def console_logging() -> Iterator[None]:
    """`main` sets up the console script's logging (on this test's captured stderr) and the credentials
    registered for redaction ("testing"); both are put back after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.excepthook, threading.excepthook)
    levels = {name: logging.getLogger(name).level for name in logs.OWN_LOGGERS}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    sys.excepthook, threading.excepthook = saved[2], saved[3]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logs._forget_all()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through the standard chain, and no ~/.aws or instance metadata to find."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"edgevoice-test-{uuid.uuid4().hex[:12]}"  # moto's backend is one per process: never reuse a name
    client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("recorded") / "sessions"
    talk.converse(storage, "default", "my name is Bob", "what is my name")
    return storage


def write_config(path: Path, storage: Path, endpoint: str, bucket: str, device: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[session]\ndir = "{storage}"\n'
        f'[sync]\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\ndevice_id = "{device}"\n'
    )
    return path


def upload(cfg: Path) -> Report:
    """One full cycle of the real sync service for the store and device `cfg` names."""
    settings = config.load(cfg)
    s, storage = settings.sync, Path(settings.session.dir)
    syncer = Syncer(storage, Bucket(make_client(s), s, device_id(s), sync_state.writer_id(storage)))
    try:
        return syncer.cycle(full=True)
    finally:
        syncer.close()


def files(session_path: Path) -> dict[str, bytes]:
    return {rel: (session_path / rel).read_bytes() for rel in sync_state.session_files(session_path)}


def mtimes(session_path: Path) -> dict[str, int]:
    return {rel: st.st_mtime_ns for rel, st in sync_state.session_files(session_path).items()}


def keys(endpoint: str, bucket: str) -> dict[str, str]:
    """Every key in the bucket -> its ETag."""
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The exit code, stdout, and stderr without the INFO records of the libraries (botocore's "Found
    credentials", moto's werkzeug access log: moto serves from this process)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, "".join(line for line in err.splitlines(True) if not line.startswith(("INFO ", "127.0.0.1 ")))


@pytest.fixture
def device_a(tmp_path: Path, recorded: Path, endpoint: str, bucket: str) -> Path:
    """Device dev-a's store, its conversation uploaded; returns its config."""
    storage = tmp_path / "a" / "sessions"
    shutil.copytree(recorded, storage)
    cfg = write_config(tmp_path / "a" / "edgevoice.toml", storage, endpoint, bucket, "dev-a")
    report = upload(cfg)
    assert report.complete and report.uploaded == len(files(session_dir(storage, "default"))), report
    return cfg


def store_of(cfg: Path) -> Path:
    return Path(config.load(cfg).session.dir)


def test_pull_brings_a_session_to_another_device(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a = session_dir(store_of(device_a), "default")
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", tmp_path / "b" / "sessions", endpoint, bucket, "dev-b")
    b = session_dir(store_of(cfg_b), "default")

    code, out, err = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert code == 0, err
    n = len(files(a))
    assert out.splitlines() == [f"pull dev-a/default: {n} pulled, 0 already here, 0 newer local kept, 0 failed"]
    assert files(b) == files(a)  # byte for byte, every file
    s3 = client(endpoint)
    for rel, mtime_ns in mtimes(b).items():
        head = s3.head_object(Bucket=bucket, Key=f"edgevoice/dev-a/session_default/{rel}")
        assert mtime_ns == int(head["LastModified"].timestamp()) * 1_000_000_000
    assert not sync_state.state_path(b).exists()  # another device's folder: nothing recorded as ours

    # Read alike: the pulled conversation shows as the original does.
    assert run(capsys, "sessions", "--config", str(cfg_b), "show", "default")[1] == run(
        capsys, "sessions", "--config", str(device_a), "show", "default"
    )[1]

    before = mtimes(b)
    code, out, _ = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert code == 0 and out.startswith(f"pull dev-a/default: 0 pulled, {n} already here, 0 newer local kept, 0 failed")
    assert mtimes(b) == before and files(b) == files(a)

    # The replacement device carries the conversation on, and its uploads go to its own folder as new objects.
    talk.converse(store_of(cfg_b), "default", "what is my name")
    last = json.loads((b / MESSAGES / f"message_{n_messages(b) - 1}.json").read_bytes())
    assert "Bob" in last["message"]["content"][0]["text"]
    report = upload(cfg_b)
    assert report.complete and report.conflicts == 0 and report.uploaded == len(files(b))
    assert len([k for k in keys(endpoint, bucket) if k.startswith("edgevoice/dev-b/session_default/")]) == len(files(b))


def n_messages(session_path: Path) -> int:
    return len(list((session_path / MESSAGES).glob("message_*.json")))


def test_a_newer_local_file_is_kept_an_older_one_replaced(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", tmp_path / "b" / "sessions", endpoint, bucket, "dev-b")
    pull = ("sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert run(capsys, *pull)[0] == 0
    target = session_dir(store_of(cfg_b), "default") / MESSAGES / "message_1.json"
    original = target.read_bytes()
    record = json.loads(original)
    record["message"]["content"][0]["text"] = "Nice to meet you, Robert."
    changed = json.dumps(record).encode()
    target.write_bytes(changed)
    later = time.time_ns() + 3600 * 1_000_000_000
    os.utime(target, ns=(later, later))

    code, out, err = run(capsys, *pull)
    assert code == 1
    assert "0 pulled" in out and "1 newer local kept" in out
    assert err.splitlines() == [
        f"edgevoice: pull: {MESSAGES}/message_1.json: the local file differs and is newer than the object; kept"
    ]
    assert target.read_bytes() == changed and target.stat().st_mtime_ns == later

    os.utime(target, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # 2001: older than the object
    code, out, _ = run(capsys, *pull)
    assert code == 0 and out.startswith("pull dev-a/default: 1 pulled,")
    assert target.read_bytes() == original


def test_a_corrupt_object_is_refused_and_replaces_nothing(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", tmp_path / "b" / "sessions", endpoint, bucket, "dev-b")
    pull = ("sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert run(capsys, *pull)[0] == 0
    b = session_dir(store_of(cfg_b), "default")
    before = files(b)
    # Put by something other than the sync service: no checksum asked for, so S3 stores none.
    plain = Config(request_checksum_calculation="when_required")
    key = f"edgevoice/dev-a/session_default/{MESSAGES}/message_0.json"
    boto_session().client("s3", endpoint_url=endpoint, config=plain).put_object(Bucket=bucket, Key=key, Body=b'{"mes')
    assert "ChecksumCRC32" not in client(endpoint).head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")

    code, out, err = run(capsys, *pull)
    assert code == 1 and "1 failed" in out
    assert err.splitlines() == [
        f"edgevoice: pull: {MESSAGES}/message_0.json: not a usable session file (not valid JSON); not written",
        "edgevoice: pull: 1 object(s) carry no CRC32: checked as session files only",
    ]
    assert files(b) == before

    # Into an empty store: everything else comes, the corrupt one does not.
    cfg_c = write_config(tmp_path / "c" / "edgevoice.toml", tmp_path / "c" / "sessions", endpoint, bucket, "dev-c")
    assert run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_c))[0] == 1
    c = session_dir(store_of(cfg_c), "default")
    assert files(c) == {rel: body for rel, body in before.items() if rel != f"{MESSAGES}/message_0.json"}


def test_bytes_that_do_not_match_the_stored_checksum_are_refused(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    # Bit rot behind S3's back: moto (in this process) serves other bytes under the CRC32 it stored.
    keys = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys
    key = keys[f"edgevoice/dev-a/session_default/{MESSAGES}/message_1.json"]
    key.value = key.value.replace(b"Bob", b"Rob")
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", tmp_path / "b" / "sessions", endpoint, bucket, "dev-b")

    code, out, err = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert code == 1 and "1 failed" in out
    assert f"{MESSAGES}/message_1.json: not fetched: FlexibleChecksumError" in err
    b = session_dir(store_of(cfg_b), "default")
    assert not (b / MESSAGES / "message_1.json").exists() and (b / MESSAGES / "message_0.json").exists()


def test_only_the_files_of_a_session_are_pulled_and_a_missing_one_is_said(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, base = client(endpoint), "edgevoice/dev-a/session_default"
    strays = ["quarantine/message_0.json", "../../escape.json", "agents/agent_edgevoice/messages/.edgevoice_x.tmp"]
    for rel in strays:
        s3.put_object(Bucket=bucket, Key=f"{base}/{rel}", Body=b"{}")
    assert {f"{base}/{rel}" for rel in strays} <= set(keys(endpoint, bucket))  # kept literally, not resolved
    s3.delete_object(Bucket=bucket, Key=f"{base}/session.json")
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", tmp_path / "b" / "sessions", endpoint, bucket, "dev-b")

    code, out, err = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert code == 1 and out.startswith("pull dev-a/default: 5 pulled,") and "4 failed" in out
    lines = err.splitlines()
    assert len(lines) == 4 and all(any(rel in line for line in lines) for rel in strays)
    assert "edgevoice: pull: session.json is not in the bucket" in err
    original = files(session_dir(store_of(device_a), "default"))
    assert files(session_dir(store_of(cfg_b), "default")) == {r: b for r, b in original.items() if r != "session.json"}
    assert not (tmp_path / "b" / "escape.json").exists() and not (tmp_path / "escape.json").exists()


def test_pulling_its_own_folder_records_the_session_as_synced(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A replacement for dev-a, configured with its device id: a new store, so a new writer id.
    cfg = write_config(tmp_path / "new" / "edgevoice.toml", tmp_path / "new" / "sessions", endpoint, bucket, "dev-a")
    code, out, err = run(capsys, "sync", "pull", "default", "--config", str(cfg))
    n = len(files(session_dir(store_of(device_a), "default")))
    assert code == 0, err
    assert out.splitlines() == [f"pull dev-a/default: {n} pulled, 0 already here, 0 newer local kept, 0 failed, "
                                f"{n} recorded as synced"]
    code, out, _ = run(capsys, "sessions", "--config", str(cfg), "list", "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["synced"] is True

    etags = keys(endpoint, bucket)
    report = upload(cfg)  # every file reads as confirmed: nothing to look at again
    assert report.complete and report.uploaded == report.already == 0
    assert keys(endpoint, bucket) == etags

    # Carrying on: new messages are uploaded, and a pulled message the daemon rewrites in place (a barge-in's
    # cut transcript) replaces the old device's copy, no conflict: the PUT is conditional on the recorded ETag.
    talk.converse(store_of(cfg), "default", "what is my name")
    rewritten = session_dir(store_of(cfg), "default") / MESSAGES / "message_3.json"
    record = json.loads(rewritten.read_bytes())
    record["redact_message"] = {"role": "assistant", "content": [{"text": "Your name"}]}
    write_bytes(rewritten, json.dumps(record).encode())
    report = upload(cfg)
    assert report.complete and report.conflicts == 0 and report.uploaded == 3, report
    key = f"edgevoice/dev-a/session_default/{MESSAGES}/message_3.json"
    assert client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read() == rewritten.read_bytes()
    assert run(capsys, "sessions", "--config", str(cfg), "list", "--json")[1].count('"synced": true') == 1


def test_an_unknown_session_or_bad_input_exits_2_and_creates_nothing(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = tmp_path / "b" / "sessions"
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", storage, endpoint, bucket, "dev-b")
    code, out, err = run(capsys, "sync", "pull", "nosuch", "--device", "dev-a", "--config", str(cfg_b))
    assert (code, out) == (2, "")
    assert err == f"edgevoice: no session 'nosuch' of device 'dev-a' in s3://{bucket}/edgevoice/dev-a/session_nosuch/\n"
    code, _, err = run(capsys, "sync", "pull", "default", "--config", str(cfg_b))  # dev-b's own folder: empty
    assert code == 2 and "no session 'default' of device 'dev-b'" in err
    code, _, err = run(capsys, "sync", "pull", "../x", "--device", "dev-a", "--config", str(cfg_b))
    assert code == 2 and err.startswith("edgevoice: session id '../x' must be")
    code, _, err = run(capsys, "sync", "pull", "default", "--device", "a/b", "--config", str(cfg_b))
    assert code == 2 and err.startswith("edgevoice: device id 'a/b' must be")
    off = tmp_path / "off.toml"
    off.write_text(f'[session]\ndir = "{storage}"\n')
    code, _, err = run(capsys, "sync", "pull", "default", "--config", str(off))
    assert code == 2 and "sync.bucket is empty" in err
    assert not storage.exists()


def test_a_store_in_use_is_not_pulled_into(
    device_a: Path, tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = tmp_path / "b" / "sessions"
    cfg_b = write_config(tmp_path / "b" / "edgevoice.toml", storage, endpoint, bucket, "dev-b")
    held = lock_store(storage)  # what the running daemon holds
    assert held is not None
    with held:
        code, out, err = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg_b))
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "is in use by another edgevoice" in err and "stop the daemon" in err
    assert list(storage.iterdir()) == []


def test_an_unreachable_bucket_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = write_config(tmp_path / "edgevoice.toml", tmp_path / "sessions", f"http://127.0.0.1:{port}", "edgevoice-x",
                       "dev-b")
    code, out, err = run(capsys, "sync", "pull", "default", "--device", "dev-a", "--config", str(cfg))
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and err.startswith("edgevoice: pull: s3://edgevoice-x/edgevoice/dev-a/")
    assert "EndpointConnectionError" in err
    assert not (tmp_path / "sessions").exists()
