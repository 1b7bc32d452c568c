"""`edgevoice sync --once` and `edgevoice sessions list --json` as other tools see them: exit codes, one-line
errors, the `synced` field, no credential in any output."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import client, s3_server
from tests.talk import converse

BUCKET = "edgevoice-test"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("recorded") / "sessions"
    converse(store, "kitchen", "my name is alice", "what is my name")
    return store


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),  # no ~/.aws
        "AWS_ACCESS_KEY_ID": "AKIAEDGEVOICETEST001",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def write_config(tmp_path: Path, store: Path, endpoint: str, **extra: str) -> Path:
    cfg = tmp_path / "edgevoice.toml"
    keys = "".join(f'{k} = "{v}"\n' for k, v in extra.items())
    cfg.write_text(
        f'[session]\ndir = "{store}"\n[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\n'
        f'device_id = "dev-a"\n{keys}'
    )
    return cfg


def edgevoice(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "edgevoice")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as ep:
        client(ep).create_bucket(Bucket=BUCKET)
        yield ep


def synced(env: dict[str, str], cfg: Path) -> dict[str, bool]:
    """`synced` of the stored sessions (the listing also shows the current id, "default", not stored yet)."""
    out = edgevoice(env, "sessions", "--config", str(cfg), "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["session_id"]: r["synced"] for r in map(json.loads, out.stdout.splitlines())}
    assert rows.pop("default") is False
    return rows


def test_once_uploads_then_finds_nothing_to_do_and_sessions_list_says_synced(
    endpoint: str, recorded: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    store = tmp_path / "sessions"
    shutil.copytree(recorded, store)
    cfg = write_config(tmp_path, store, endpoint, prefix="cli-ok")
    (store / "session_kitchen" / "quarantine").mkdir()  # set aside by a scan: never uploaded, never counted
    (store / "session_kitchen" / "quarantine" / "message_9.json").write_text("{")
    assert synced(env, cfg) == {"kitchen": False}
    first = edgevoice(env, "sync", "--config", str(cfg), "--once")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("sync: 6 uploaded, 0 already confirmed, 0 failed")
    assert synced(env, cfg) == {"kitchen": True}
    again = edgevoice(env, "sync", "--once", "--config", str(cfg))
    assert again.returncode == 0 and again.stdout.startswith("sync: 0 uploaded, 0 already confirmed")
    keys = client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix="cli-ok/dev-a/session_kitchen/")["KeyCount"]
    assert keys == 6
    for out in (first, again):
        assert SECRET not in out.stdout + out.stderr and "AKIAEDGEVOICETEST001" not in out.stdout + out.stderr
    converse(store, "kitchen", "thank you")  # written after the last confirmed upload
    assert synced(env, cfg) == {"kitchen": False}


def test_once_exits_1_when_s3_cannot_be_reached_and_nothing_reads_synced(
    recorded: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "sessions"
    shutil.copytree(recorded, store)
    cfg = write_config(tmp_path, store, f"http://127.0.0.1:{port}")
    out = edgevoice(env, "-v", "sync", "--config", str(cfg), "--once", timeout=60)
    assert out.returncode == 1, out.stderr
    assert "upload failed: EndpointConnectionError" in out.stderr
    assert "0 uploaded" in out.stdout
    assert SECRET not in out.stderr and "AKIAEDGEVOICETEST001" not in out.stderr  # not even with -v
    assert synced(env, cfg) == {"kitchen": False}


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[sync]\nbucket = "ab"\n', "sync.bucket 'ab'"),
        ('[sync]\nbucket = "good-bucket"\nprefix = "/lead"\n', "sync.prefix '/lead'"),
        ('[sync]\nbucket = "good-bucket"\nsse = "aws:kms"\n', "sync.kms_key_id"),
        ('[sync]\nbucket = "good-bucket"\nmax_concurrency = 0\n', "sync.max_concurrency"),
        ('[sync]\nbucket = "good-bucket"\nendpoint_url = "ftp://x"\n', "sync.endpoint_url"),
        ('[sync]\nbucket = ""\n', "sync.bucket is empty"),
        ('[sync]\nbucket = "good-bucket"\ndevice_id = "a/b"\n', "sync.device_id 'a/b'"),
    ],
)
def test_bad_config_is_one_line_naming_the_key_and_exit_2(
    toml: str, named: str, tmp_path: Path, env: dict[str, str]
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[session]\ndir = "{tmp_path}"\n{toml}')
    out = edgevoice(env, "sync", "--config", str(cfg), "--once")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], out.stderr


def test_the_device_id_defaults_to_the_machine_id(tmp_path: Path) -> None:
    from edgevoice import config
    from edgevoice.sync.names import device_id

    s = config.parse('[sync]\nbucket = "good-bucket"\n').sync
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    assert device_id(s, mid) == "0123456789abcdef0123456789abcdef"
    mid.write_text("")  # an image's machine-id before first boot
    with pytest.raises(config.ConfigError, match="does not hold a machine id"):
        device_id(s, mid)


def test_before_the_daemon_stored_anything_once_has_nothing_to_do_and_creates_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    store = tmp_path / "not-yet"
    cfg = write_config(tmp_path, store, "http://127.0.0.1:9")  # never contacted
    out = edgevoice(env, "sync", "--config", str(cfg), "--once")
    assert (out.returncode, out.stdout.strip()) == (0, "sync: nothing stored yet"), out.stderr
    assert not store.exists()  # session.dir is the daemon's to create, as its own user
