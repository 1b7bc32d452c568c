"""The sync service's core, step by step: what a look finds, what is recorded, what is uploaded and how.

Real files written by the real store (`tests/talk.py`), a real S3 endpoint (moto on 127.0.0.1), botocore's
own request events to count what goes over the wire.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgevoice import config
from edgevoice.sync import state
from edgevoice.sync.bucket import WRITER_META, Bucket, crc32_b64
from edgevoice.sync.plan import RACY_NS, UNSEEN, look
from edgevoice.sync.service import Syncer
from edgevoice.sync.throttle import Throttle
from tests.s3server import client, s3_server
from tests.talk import converse

BUCKET = "edgevoice-test"
DEVICE = "dev-a"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as ep:
        client(ep).create_bucket(Bucket=BUCKET)
        yield ep


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one real conversation (two turns with the offline model), recorded once per module."""
    store = tmp_path_factory.mktemp("recorded") / "sessions"
    converse(store, "kitchen", "my name is alice", "what is my name")
    return store


@pytest.fixture
def store(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "sessions"
    shutil.copytree(recorded, copy)
    return copy


class Rig:
    def __init__(self, endpoint: str, store: Path, prefix: str, **sync: Any) -> None:
        keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sync.items())
        self.settings = config.parse(
            f'[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\nprefix = "{prefix}"\n{keys}'
        ).sync
        self.s3 = client(endpoint)
        self.calls: Counter[str] = Counter()
        self.s3.meta.events.register("before-send.s3.*", self._count)
        self.store = store
        self.bucket = Bucket(self.s3, self.settings, DEVICE, state.writer_id(store))
        self.syncer = Syncer(store, self.bucket)

    def _count(self, request: Any, **_: Any) -> None:
        self.calls[request.method] += 1

    def keys(self) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.settings.prefix}/")
        return {
            o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed.get("Contents", [])
        }


@pytest.fixture
def rig(endpoint: str, store: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(endpoint, store, prefix=f"t-{request.node.name[:40].replace('_', '-')}")
    yield r
    r.syncer.close()


def local_files(session: Path) -> dict[str, bytes]:
    return {rel: (session / rel).read_bytes() for rel in state.session_files(session)}


def test_a_first_cycle_uploads_every_file_byte_for_byte_then_a_second_makes_no_request_but_looks(rig: Rig) -> None:
    session = rig.store / "session_kitchen"
    report = rig.syncer.cycle(full=True)
    files = local_files(session)
    assert report.complete and report.uploaded == len(files) == 6  # session, agent, four messages
    assert rig.calls["PUT"] == len(files)  # one request per file: no HEAD, no GET
    want = {f"{rig.settings.prefix}/{DEVICE}/session_kitchen/{rel}": body for rel, body in files.items()}
    assert rig.keys() == want
    assert state.is_synced(session)
    rig.calls.clear()
    assert rig.syncer.cycle(full=False).uploaded == 0
    assert rig.syncer.cycle(full=True).uploaded == 0
    assert rig.calls == Counter()


def test_every_object_carries_encryption_and_the_checksum_of_the_local_bytes(rig: Rig) -> None:
    rig.syncer.cycle(full=True)
    session = rig.store / "session_kitchen"
    for rel, body in local_files(session).items():
        key = rig.bucket.key("session_kitchen", rel)
        head = rig.s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "AES256", key
        assert head["ChecksumCRC32"] == crc32_b64(body), key
        assert head["Metadata"][WRITER_META] == state.writer_id(rig.store)


def test_a_message_written_after_the_upload_reads_unsynced_until_it_is_confirmed(rig: Rig) -> None:
    session = rig.store / "session_kitchen"
    rig.syncer.cycle(full=True)
    converse(rig.store, "kitchen", "thank you")  # two more messages, and agent.json rewritten
    assert not state.is_synced(session)
    rig.calls.clear()
    report = rig.syncer.cycle(full=False)  # the quick look finds them through the directory mtimes
    assert report.complete and report.uploaded >= 2
    assert rig.calls["PUT"] == report.uploaded
    assert state.is_synced(session)
    assert rig.keys()[rig.bucket.key("session_kitchen", "agents/agent_edgevoice/messages/message_5.json")]


def test_a_message_rewritten_in_place_is_uploaded_again(rig: Rig) -> None:
    session = rig.store / "session_kitchen"
    rig.syncer.cycle(full=True)
    rel = "agents/agent_edgevoice/messages/message_1.json"
    data = json.loads((session / rel).read_bytes())
    data["message"]["content"] = [{"text": "Nice to…"}]  # what a barge-in's cut does to a stored answer
    tmp = session / "agents/agent_edgevoice/messages/.edgevoice_x.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, session / rel)
    assert not state.is_synced(session)
    report = rig.syncer.cycle(full=False)
    assert report.uploaded == 1
    assert rig.keys()[rig.bucket.key("session_kitchen", rel)] == (session / rel).read_bytes()


def test_a_corrupt_local_file_is_never_uploaded_over_the_good_copy(rig: Rig) -> None:
    session = rig.store / "session_kitchen"
    rig.syncer.cycle(full=True)
    rel = "agents/agent_edgevoice/messages/message_2.json"
    good = (session / rel).read_bytes()
    (session / rel).write_bytes(good[: len(good) // 2])  # a torn write
    # Written in place, not renamed in as the store writes, so the directory's mtime need not move: the full
    # look the service makes at start is what finds it (a quick one would only by the luck of a racy mtime).
    report = rig.syncer.cycle(full=True)
    assert report.unusable == 1 and not report.complete
    assert "not valid JSON" in report.errors[0] and "message_2.json" in report.errors[0]
    assert rig.keys()[rig.bucket.key("session_kitchen", rel)] == good
    assert not state.is_synced(session)


def test_a_lost_confirmation_is_found_by_the_conditional_put_without_a_second_upload(rig: Rig) -> None:
    """A kill after S3 stored the files but before the state was saved: the next run's conditional PUT is
    refused (412), a HEAD shows our own bytes, and they count as confirmed."""
    session = rig.store / "session_kitchen"
    rig.syncer.cycle(full=True)
    state.forget(session)
    again = Syncer(rig.store, rig.bucket)
    try:
        rig.calls.clear()
        report = again.cycle(full=True)
    finally:
        again.close()
    assert report.complete and report.uploaded == 0 and report.already == 6
    assert rig.calls == Counter({"PUT": 6, "HEAD": 6})  # each refused by IfNoneMatch, then looked at
    assert state.is_synced(session)


def test_another_writers_copy_is_a_conflict_and_is_left_alone(rig: Rig) -> None:
    key = rig.bucket.key("session_kitchen", "session.json")
    rig.s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"other": "device"}', Metadata={WRITER_META: "f" * 32})
    report = rig.syncer.cycle(full=True)
    assert report.conflicts == 1 and not report.complete
    assert key in report.errors[0] and "did not write" in report.errors[0]
    assert rig.keys()[key] == b'{"other": "device"}'
    assert not state.is_synced(rig.store / "session_kitchen")


def test_a_state_that_cannot_be_read_is_an_empty_one(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    session = store / "session_kitchen"
    path = state.state_path(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"version": 1, "files": {"x": [1]}')
    assert state.load(session) == state.SessionState()
    assert "cannot be used" in caplog.text and "every file is checked again" in caplog.text
    assert not state.is_synced(session)


def test_a_quiet_look_lists_nothing_and_a_racy_directory_is_looked_at_again(store: Path) -> None:
    session = store / "session_kitchen"
    now = [10**19]  # far after every mtime: nothing is racy
    first = look(session, state.SessionState(), full=False, clock_ns=lambda: now[0])
    names = [p.rel.rpartition("/")[2] for p in first.pending]
    assert names[:4] == [f"message_{i}.json" for i in range(4)] and names[4:] == ["agent.json", "session.json"]
    recorded = state.SessionState(
        {p.rel: state.Record(p.size, p.mtime_ns, "", "") for p in first.pending}, dict(first.dirs)
    )
    agent_dirs = {"agents", "agents/agent_edgevoice", "agents/agent_edgevoice/messages"}
    assert set(first.dirs) == {"", "multi_agents", *agent_dirs}
    assert look(session, recorded, full=False, clock_ns=lambda: now[0]).pending == []
    # Listed within RACY_NS of its mtime, a directory is not trusted next time.
    messages = session / "agents/agent_edgevoice/messages"
    racy = look(session, state.SessionState(), full=False, clock_ns=lambda: messages.stat().st_mtime_ns + RACY_NS - 1)
    assert racy.dirs["agents/agent_edgevoice/messages"] == UNSEEN
    # A file renamed in without the directory's mtime moving (the same coarse tick) is still found, because
    # the racy directory was not trusted, though its parents were.
    recorded.dirs = {**first.dirs, "agents/agent_edgevoice/messages": UNSEEN}
    before = messages.stat()
    (messages / "message_4.json").write_bytes((messages / "message_3.json").read_bytes())
    os.utime(messages, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick: the mtime did not move
    new = "agents/agent_edgevoice/messages/message_4.json"
    assert [p.rel for p in look(session, recorded, full=False).pending] == [new]
    # The control: had the directory been trusted, the quick look would have missed the file.
    trusted = state.SessionState(recorded.files, {**first.dirs, "agents/agent_edgevoice/messages": before.st_mtime_ns})
    assert look(session, trusted, full=False).pending == []
    assert [p.rel for p in look(session, trusted, full=True).pending] == [new]  # a full look always finds it


def test_quarantined_and_temp_files_are_never_uploaded(rig: Rig) -> None:
    session = rig.store / "session_kitchen"
    (session / "quarantine").mkdir()
    (session / "quarantine" / "message_9.json").write_text("{")
    (session / "agents/agent_edgevoice/messages/.strands_abc.tmp").write_text("{")
    assert rig.syncer.cycle(full=True).complete
    rels = [k.split("/session_kitchen/")[1] for k in rig.keys()]  # noqa: SIM118 (a method, not a dict)
    assert len(rels) == 6 and not [r for r in rels if r.startswith("quarantine") or r.endswith(".tmp")]
    assert state.is_synced(session)


def test_the_throttle_holds_the_rate_across_takes() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    t = Throttle(1000, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        t.take(500)  # 2500 bytes: the first 1000 are the burst, the rest wait 1.5 s in all
    assert sum(slept) == pytest.approx(1.5)
    assert Throttle(0, sleep=lambda s: pytest.fail("no cap, no wait")).take(10**9) is None


def test_the_service_client_sends_small_bodies_without_waiting_for_100_continue(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's default asks for `100 Continue` before every PUT body: a round trip per message."""
    from edgevoice.sync.bucket import make_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = config.parse(f'[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\n').sync
    headers: list[dict[str, Any]] = []
    for s3 in (make_client(settings), client(endpoint)):  # ours, then a stock client: the control
        s3.meta.events.register("before-send.s3.PutObject", lambda request, **_: headers.append(dict(request.headers)))
        s3.put_object(Bucket=BUCKET, Key="expect/x.json", Body=b"{}")
    assert "Expect" not in headers[0] and headers[1]["Expect"] == b"100-continue"


def test_kms_encryption_names_the_key_on_every_object(endpoint: str, store: Path) -> None:
    r = Rig(endpoint, store, prefix="t-kms", sse="aws:kms", kms_key_id="alias/edgevoice-fleet")
    try:
        assert r.syncer.cycle(full=True).complete
    finally:
        r.syncer.close()
    keys = list(r.keys())
    assert len(keys) == 6
    for key in keys:
        head = r.s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"].endswith("alias/edgevoice-fleet"), head["SSEKMSKeyId"]
