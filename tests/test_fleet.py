"""`edgevoice fleet list | show`: two devices' real conversations uploaded by the sync service to moto on
127.0.0.1, read back through `edgevoice.cli.main` (show with stock Strands' S3SessionManager).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import boto3
import pytest
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import SessionAgent, SessionMessage

from edgevoice import config
from edgevoice.sync import fleet
from tests import talk
from tests import test_sync_pull as kit
from tests.s3server import client

# The pull tests' fixtures: moto, the dummy AWS credentials, the console logging put back after each test.
endpoint = kit.endpoint
aws_env = kit.aws_env
console_logging = kit.console_logging
bucket = kit.bucket
run = kit.run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """dev-a's store (one conversation), dev-b's (a conversation and a tool exchange)."""
    root = tmp_path_factory.mktemp("fleet")
    a, b = root / "a", root / "b"
    talk.converse(a, "default", "my name is Bob", "what is my name")
    talk.converse(b, "kitchen", "call me Max")
    sm = FileSessionManager("tools", storage_dir=str(b))
    sm.create_agent("tools", SessionAgent(agent_id="edgevoice", state={}, conversation_manager_state={}))
    use = {"toolUse": {"toolUseId": "t1", "name": "current_time", "input": {"zone": "UTC"}}}
    result = {"toolResult": {"toolUseId": "t1", "status": "success", "content": [{"text": "10:45"}]}}
    for i, (role, content) in enumerate(
        [("user", [{"text": "what time is it"}]), ("assistant", [use]), ("user", [result]),
         ("assistant", [{"text": "It is 10:45."}])]
    ):
        sm.create_message("tools", "edgevoice", SessionMessage({"role": role, "content": content}, i))
    return a, b


@pytest.fixture
def devices(recorded: tuple[Path, Path], tmp_path: Path, endpoint: str, bucket: str) -> dict[str, Path]:
    """Both devices' stores uploaded; device id -> its config."""
    cfgs = {}
    for device, template in zip(("dev-a", "dev-b"), recorded, strict=True):
        storage = tmp_path / device / "sessions"
        shutil.copytree(template, storage)
        cfgs[device] = kit.write_config(tmp_path / device / "edgevoice.toml", storage, endpoint, bucket, device)
        report = kit.upload(cfgs[device])
        assert report.complete and report.uploaded > 0, report
    return cfgs


def local_list(cfg: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, _ = run(capsys, "sessions", "--config", str(cfg), "list", "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_list_shows_every_device_and_session(devices: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "fleet", "--config", str(devices["dev-a"]), "list", "--json")
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["device_id"], r["session_id"]) for r in rows] == [("dev-a", "default"), ("dev-b", "kitchen"),
                                                                 ("dev-b", "tools")]
    local = {(d, s["session_id"]): s["messages"] for d, cfg in devices.items() for s in local_list(cfg, capsys)}
    for r in rows:
        assert set(r) == {"device_id", "session_id", "messages", "last_modified"}
        assert r["messages"] == local[(r["device_id"], r["session_id"])]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["last_modified"])

    code, out, _ = run(capsys, "fleet", "list", "--config", str(devices["dev-b"]))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DEVICE", "SESSION", "MESSAGES", "LAST", "MODIFIED"]
    assert [line.split()[:3] for line in lines[1:]] == [["dev-a", "default", "4"], ["dev-b", "kitchen", "2"],
                                                        ["dev-b", "tools", "4"]]


@pytest.mark.parametrize(("device", "session_id"), [("dev-a", "default"), ("dev-b", "kitchen"), ("dev-b", "tools")])
def test_show_reads_a_conversation_as_sessions_show_does(
    devices: dict[str, Path], device: str, session_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = devices[device]
    code, remote, err = run(capsys, "fleet", "show", device, session_id, "--config", str(cfg))
    assert (code, err) == (0, "")
    code, local, _ = run(capsys, "sessions", "--config", str(cfg), "show", session_id)
    assert code == 0
    # Every line alike (messages in order, tool summaries, agent state) but the header, which names the device.
    assert remote.splitlines()[0] == local.splitlines()[0].replace(f"session {session_id}:",
                                                                    f"session {session_id} of device {device}:")
    assert remote.splitlines()[1:] == local.splitlines()[1:]
    if session_id == "default":
        said = [line.split("] ", 1)[1] for line in remote.splitlines() if line.startswith("[")]
        assert said == ["you: my name is Bob", "assistant: Nice to meet you, Bob.", "you: what is my name",
                        "assistant: Your name is Bob."]
    if session_id == "tools":
        assert '] assistant: [tool use current_time {"zone": "UTC"}]' in remote


def test_a_missing_session_exits_2_and_nothing_is_created(
    devices: dict[str, Path], endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(devices["dev-a"])
    before = kit.keys(endpoint, bucket)
    code, out, err = run(capsys, "fleet", "show", "dev-a", "nosuch", "--config", cfg)
    assert (code, out) == (2, "")
    assert err == f"edgevoice: no session 'nosuch' of device 'dev-a' in s3://{bucket}/edgevoice/dev-a/session_nosuch/\n"
    code, _, err = run(capsys, "fleet", "show", "dev-z", "default", "--config", cfg)
    assert code == 2 and "no session 'default' of device 'dev-z'" in err
    code, _, err = run(capsys, "fleet", "show", "dev-a", "../default", "--config", cfg)
    assert code == 2 and err.startswith("edgevoice: session id '../default' must be")
    assert kit.keys(endpoint, bucket) == before


def test_the_read_only_manager_refuses_to_create_a_session(
    devices: dict[str, Path], endpoint: str, bucket: str
) -> None:
    """Past the HEAD (a session deleted in between), Strands would create it: the boto3 session refuses."""
    before = kit.keys(endpoint, bucket)
    s = config.load(devices["dev-a"]).sync
    with pytest.raises(fleet.ReadOnly):
        fleet.read_only_manager(boto3.Session(), s, "dev-a", "ghost")
    assert kit.keys(endpoint, bucket) == before
    manager = fleet.read_only_manager(boto3.Session(), s, "dev-a", "default")  # an existing one reads fine
    assert [m.message_id for m in manager.list_messages("default", "edgevoice")] == [0, 1, 2, 3]


@pytest.mark.parametrize("rel", ["agents/agent_edgevoice/messages/message_2.json", "session.json"])
def test_an_object_strands_cannot_read_exits_1_with_one_line(
    devices: dict[str, Path], rel: str, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"edgevoice/dev-a/session_default/{rel}"
    client(endpoint).put_object(Bucket=bucket, Key=key, Body=b'{"message": ')
    code, out, err = run(capsys, "fleet", "show", "dev-a", "default", "--config", str(devices["dev-a"]))
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and f"Invalid JSON in S3 object {key}" in err


def test_an_empty_bucket_lists_nothing(
    tmp_path: Path, endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(kit.write_config(tmp_path / "edgevoice.toml", tmp_path / "sessions", endpoint, bucket, "dev-a"))
    assert run(capsys, "fleet", "list", "--json", "--config", cfg) == (0, "", "")
    assert run(capsys, "fleet", "list", "--config", cfg) == (0, f"no sessions in s3://{bucket}/edgevoice\n", "")


def test_bad_config_exits_2_and_an_unreachable_bucket_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    off = tmp_path / "off.toml"
    off.write_text(f'[session]\ndir = "{tmp_path / "sessions"}"\n')
    code, out, err = run(capsys, "fleet", "list", "--config", str(off))
    assert (code, out, err) == (2, "", "edgevoice: config: sync.bucket is empty: there is no bucket to read\n")

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = kit.write_config(tmp_path / "down.toml", tmp_path / "sessions", f"http://127.0.0.1:{port}", "edgevoice-x",
                           "dev-a")
    for argv in (["list"], ["show", "dev-a", "default"]):
        code, out, err = run(capsys, "fleet", "--config", str(cfg), *argv)
        assert (code, out) == (1, "")
        assert len(err.splitlines()) == 1 and "EndpointConnectionError" in err, err
