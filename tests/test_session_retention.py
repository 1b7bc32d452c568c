"""Retention over real sessions written by a real BidiAgent (local model) through the durable store."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from edgevoice.config import SessionSettings
from edgevoice.session.current import set_current
from edgevoice.session.inspect import SessionInfo, list_sessions, session_info
from edgevoice.session.layout import session_dir
from edgevoice.session.retention import (
    DELETING_PREFIX,
    apply_retention,
    enforce,
    plan_retention,
    select_for_deletion,
)
from tests import talk
from tests.synckit import mark_synced

DAY = 86400.0
IDS = ("a", "b", "c", "d", "e")


def converse(storage: Path, session_id: str, *texts: str, state: dict[str, int] | None = None) -> None:
    talk.converse(storage, session_id, *texts, state=state)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five sessions of different lengths, so their sizes differ."""
    storage = tmp_path_factory.mktemp("retention") / "sessions"
    for i, sid in enumerate(IDS):
        converse(storage, sid, *[f"my name is {sid.upper()}{'x' * i}", "what is my name"][: 1 + i % 2] * (1 + i))
    return storage


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    storage = tmp_path / "sessions"
    shutil.copytree(template, storage)
    return storage


def age(path: Path, days: float) -> None:
    """Make every file and directory of a session look last written `days` ago."""
    when = time.time() - days * DAY
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.utime(os.path.join(root, name), (when, when))
    os.utime(path, (when, when))


def ids(sessions: list[SessionInfo]) -> list[str]:
    return [s.session_id for s in sessions]


def info(store: Path) -> dict[str, SessionInfo]:
    return {s.session_id: s for s in list_sessions(store)}


def test_marker_makes_a_session_synced_until_it_is_written_again(store: Path) -> None:
    path = session_dir(store, "a")
    assert not session_info(path).synced
    mark_synced(path)
    assert session_info(path).synced
    before = session_info(path).message_count
    converse(store, "a", "what time is it")  # the daemon talks in it again
    after = session_info(path)
    assert after.message_count == before + 2
    assert not after.synced


def test_listing_sizes_and_counts_match_the_files(store: Path) -> None:
    for sid, s in info(store).items():
        files = [Path(r) / f for r, _, fs in os.walk(s.path) for f in fs]
        assert s.size_bytes == sum(f.stat().st_size for f in files)
        messages = list((s.path / "agents" / "agent_edgevoice" / "messages").glob("message_*.json"))
        assert s.messages == {"edgevoice": len(messages)} and s.message_count == len(messages) > 0, sid
        assert s.last_activity == max(f.stat().st_mtime for f in files)


def test_age_cap_deletes_only_old_synced_sessions(store: Path) -> None:
    for sid, days in zip(IDS, (10, 9, 8, 2, 1), strict=True):
        age(session_dir(store, sid), days)
    for sid in ("a", "c", "d"):  # b is old but not synced; e is new and not synced
        mark_synced(session_dir(store, sid))
    plan = plan_retention(store, 0, 5, time.time(), keep=set())
    assert ids(plan) == ["a", "c"]
    assert ids(plan_retention(store, 0, 8.5, time.time(), keep=set())) == ["a"]
    assert plan_retention(store, 0, 30, time.time(), keep=set()) == []


def test_bytes_cap_deletes_oldest_synced_first_until_under(store: Path) -> None:
    for sid, days in zip(IDS, (5, 4, 3, 2, 1), strict=True):
        age(session_dir(store, sid), days)
        mark_synced(session_dir(store, sid))
    sizes = {sid: s.size_bytes for sid, s in info(store).items()}
    total = sum(sizes.values())
    now = time.time()
    assert plan_retention(store, total, 0, now, keep=set()) == []
    # Deleting the oldest alone leaves one byte too many: the next oldest goes too.
    assert ids(plan_retention(store, total - sizes["a"] - 1, 0, now, keep=set())) == ["a", "b"]
    assert ids(plan_retention(store, total - sizes["a"], 0, now, keep=set())) == ["a"]
    # A kept (current) session is skipped, the next oldest taken instead.
    assert ids(plan_retention(store, total - sizes["a"], 0, now, keep={"a"})) == ["b"]


def test_unsynced_and_current_sessions_are_never_deleted(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    for sid, days in zip(IDS, (50, 40, 30, 20, 10), strict=True):
        age(session_dir(store, sid), days)
    for sid in ("a", "c", "d", "e"):  # b never synced
        mark_synced(session_dir(store, sid))
    caplog.set_level(logging.INFO, logger="edgevoice.session.retention")
    deleted = apply_retention(store, 1, 1, time.time(), keep={"c"})
    assert ids(deleted) == ["a", "d", "e"]
    assert sorted(ids(list_sessions(store))) == ["b", "c"]
    assert sorted(p.name for p in store.iterdir()) == [".sync", "session_b", "session_c"]
    # The sync states of deleted sessions go with them (b was never synced; c is kept).
    assert sorted(p.name for p in (store / ".sync").iterdir()) == ["session_c.json"]
    log = caplog.text
    for sid in ("a", "d", "e"):
        assert f"deleted session {sid} " in log
    assert "over session.max_bytes 1" in log  # b and c alone exceed the cap: said, not fixed


def test_apply_deletes_what_the_plan_says(store: Path) -> None:
    for sid, days in zip(IDS, (5, 4, 3, 2, 1), strict=True):
        age(session_dir(store, sid), days)
        mark_synced(session_dir(store, sid))
    now = time.time()
    sizes = {sid: s.size_bytes for sid, s in info(store).items()}
    cap = sum(sizes.values()) - sizes["a"] - sizes["b"] - 1
    plan = plan_retention(store, cap, 0, now, keep={"e"})
    assert ids(plan) == ["a", "b", "c"]
    assert ids(apply_retention(store, cap, 0, now, keep={"e"})) == ids(plan)
    assert sorted(info(store)) == ["d", "e"]
    assert sum(s.size_bytes for s in list_sessions(store)) <= cap
    assert not [p for p in store.iterdir() if p.name.startswith(DELETING_PREFIX)]


def test_caps_of_zero_delete_nothing(store: Path) -> None:
    for sid in IDS:
        age(session_dir(store, sid), 100)
        mark_synced(session_dir(store, sid))
    assert plan_retention(store, 0, 0, time.time(), keep=set()) == []
    assert apply_retention(store, 0, 0, time.time(), keep=set()) == []
    assert sorted(info(store)) == list(IDS)


def test_an_interrupted_deletion_is_finished_and_never_listed(store: Path) -> None:
    half = store / f"{DELETING_PREFIX}session_a"
    session_dir(store, "a").rename(half)  # a crash right after the rename
    assert "a" not in info(store)
    age(session_dir(store, "b"), 10)
    mark_synced(session_dir(store, "b"))
    assert ids(apply_retention(store, 0, 5, time.time(), keep=set())) == ["b"]
    assert not half.exists()
    assert sorted(info(store)) == ["c", "d", "e"]


def test_enforce_keeps_the_current_session_from_the_current_file(store: Path) -> None:
    for sid in IDS:
        age(session_dir(store, sid), 10)
        mark_synced(session_dir(store, sid))
    set_current(store, "d")
    settings = SessionSettings(dir=str(store), session_id="a", max_age_days=5)
    assert ids(enforce(settings)) == ["a", "b", "c", "e"]  # the configured id is not current any more
    assert sorted(info(store)) == ["d"]


def test_selection_is_pure_over_a_listing() -> None:
    def s(sid: str, size: int, last: float, synced: bool = True) -> SessionInfo:
        return SessionInfo(sid, Path("/nonexistent") / sid, size, last, synced, 0, {"edgevoice": 2})

    listing = [
        s("new", 100, 900),
        s("old", 100, 100),
        s("mid", 100, 500, synced=False),
        s("tie2", 50, 300),
        s("tie1", 50, 300),
    ]
    assert ids(select_for_deletion(listing, 400, 0, 1000, keep=())) == []
    assert ids(select_for_deletion(listing, 300, 0, 1000, keep=())) == ["old"]
    assert ids(select_for_deletion(listing, 299, 0, 1000, keep=())) == ["old", "tie1"]  # ties by id
    assert ids(select_for_deletion(listing, 0, 600 / DAY, 1000, keep=())) == ["old", "tie1", "tie2"]
    assert ids(select_for_deletion(listing, 0, 600 / DAY, 1000, keep={"tie1"})) == ["old", "tie2"]
    # Both caps: age takes "old", then bytes the next oldest synced until under; "mid" (unsynced) stays.
    assert ids(select_for_deletion(listing, 300, 800 / DAY, 1000, keep=())) == ["old"]
    assert ids(select_for_deletion(listing, 250, 800 / DAY, 1000, keep=())) == ["old", "tie1"]
    assert ids(select_for_deletion(listing, 1, 800 / DAY, 1000, keep=())) == ["old", "tie1", "tie2", "new"]
