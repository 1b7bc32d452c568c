"""The round trip an operator relies on: a conversation the daemon recorded with the `local` model is synced
by `edgevoice sync --once`, then read back with stock Strands `S3SessionManager` at the documented prefix,
every message identical, and a second device restores the conversation from the bucket with it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from strands.session.s3_session_manager import S3SessionManager

from tests.rundrops import EDGEVOICE, Conversation
from tests.s3server import boto_session, client, s3_server

BUCKET = "edgevoice-fleet"
PREFIX = "fleet/eu"
DEVICE = "kitchen-7"


def test_a_daemon_conversation_comes_back_whole_through_stock_s3_session_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Voices and sentences the gate and the offline model were not tuned on.
    talk = Conversation(
        tmp_path,
        [("hello, my name is Priya", "en-gb"), ("what is my name", "en-us+f3"), ("what time is it", "en-gb-x-rp")],
        {"provider": "local"},
    )
    recorded = talk.run()
    assert recorded.rc == 0, recorded.log[-2000:]
    assert len(recorded.messages) == 6, recorded.messages
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with s3_server() as endpoint:
        client(endpoint).create_bucket(Bucket=BUCKET)
        cfg = tmp_path / "sync.toml"
        cfg.write_text(
            f'[session]\ndir = "{talk.sessions}"\n[sync]\nbucket = "{BUCKET}"\nprefix = "{PREFIX}"\n'
            f'device_id = "{DEVICE}"\nendpoint_url = "{endpoint}"\n'
        )
        env = {**os.environ, "HOME": str(talk.home), "AWS_EC2_METADATA_DISABLED": "true"}
        out = subprocess.run([EDGEVOICE, "sync", "--config", str(cfg), "--once"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr

        stock = S3SessionManager(
            session_id="default",
            bucket=BUCKET,
            prefix=f"{PREFIX}/{DEVICE}",
            boto_session=boto_session(),
            endpoint_url=endpoint,
        )
        remote = stock.list_messages("default", "edgevoice")
        local_dir = talk.sessions / "session_default"
        files = sorted((local_dir / "agents/agent_edgevoice/messages").glob("message_*.json"),
                       key=lambda p: int(p.stem.split("_")[1]))
        local = [json.loads(p.read_bytes()) for p in files]
        assert [m.to_dict() for m in remote] == local  # every field of every message, in order
        assert [m.message for m in remote] == recorded.messages
        agent = stock.read_agent("default", "edgevoice")
        agent_file = local_dir / "agents/agent_edgevoice/agent.json"
        assert agent is not None and agent.to_dict() == json.loads(agent_file.read_bytes())
        session = stock.read_session("default")
        assert session is not None and session.to_dict() == json.loads((local_dir / "session.json").read_bytes())

        # A replacement device: stock S3SessionManager restores the conversation into a real agent.
        from tests.talk import agent_for

        restored = agent_for(stock)
        assert restored.messages == recorded.messages
