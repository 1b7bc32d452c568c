"""The sync service: uploads what changed in the store, records what S3 confirmed, and waits.

A cycle looks at every session (`plan.look`: a few stats for a quiet one), uploads each pending file with up
to `sync.max_concurrency` in flight (messages first, then `agent.json` and `session.json`, so the bucket
never names a message it does not hold), and saves the session's state (`state.py`) as confirmations
arrive. Nothing is recorded before S3 confirmed it, and a kill at any moment costs at most a repeat of the
uploads whose confirmation was not yet saved: the repeat's conditional PUT finds our own bytes there.

`Syncer` is one cycle, driven by tests step by step; `run_forever` is the service's loop: `sync.interval_s`
between cycles while S3 answers, the shared backoff (capped at `sync.backoff_max_s`, with jitter) while it
does not, one log line when uploads stop working and one when they work again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..backoff import Backoff
from ..session.layout import SESSION_PREFIX, is_temp
from . import state as sync_state
from .bucket import Bucket, Conflict, crc32_b64, describe, is_transient
from .files import Unusable, check_file, read_file
from .plan import Pending, look
from .state import Record, SessionState
from .throttle import Throttle

log = logging.getLogger(__name__)

SAVE_EVERY = 256
"""Confirmations between state saves while a large backlog drains (each save rewrites the session's state)."""
SAVE_EVERY_S = 2.0
"""...or seconds, whichever comes first: a service killed over and over still keeps its progress."""
STALE_TEMP_S = 600.0
"""A temp file in the state directory this old was left by a killed state write (a live one is renamed
within milliseconds; the age spares one another sync process is writing right now)."""


@dataclass
class Report:
    """What one cycle did."""

    uploaded: int = 0
    """Files PUT and confirmed."""
    already: int = 0
    """Files found confirmed without a PUT (the same bytes already there, or unchanged but touched)."""
    failed: int = 0
    """Files that could not be uploaded (network, 5xx, throttling, refused), to try again later."""
    conflicts: int = 0
    """Keys holding a copy another writer made (left alone)."""
    unusable: int = 0
    """Local files that are not valid session files (never uploaded; the daemon's scan quarantines them)."""
    errors: list[str] = field(default_factory=list)
    """One line per distinct problem, for the log and `--once`."""

    @property
    def complete(self) -> bool:
        return not (self.failed or self.conflicts or self.unusable)

    def note(self, line: str) -> None:
        if line not in self.errors:
            self.errors.append(line)


class Skipped(Exception):
    """Not tried: an upload of this cycle already failed on the network, and the rest would wait on it too."""


class Syncer:
    """Cycles over the store at `storage_dir`, uploading to `bucket`."""

    def __init__(
        self,
        storage_dir: Path,
        bucket: Bucket,
        *,
        concurrency: int = 4,
        throttle: Throttle | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.storage_dir = storage_dir
        self.bucket = bucket
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="edgevoice-sync")
        self._throttle = throttle or Throttle(0)
        self._clock_ns = clock_ns
        self._states: dict[str, SessionState] = {}
        self._broken = threading.Event()  # set by the first network failure of a cycle, or by stop()
        self._stopping = False

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def cycle(self, *, full: bool) -> Report:
        """One look at every session, uploading what is pending. `full`: list every directory (at start)."""
        report = Report()
        if not self._stopping:
            self._broken.clear()
        try:
            names = sorted(e.name for e in os.scandir(self.storage_dir) if e.name.startswith(SESSION_PREFIX))
        except FileNotFoundError:
            return report  # nothing stored yet
        for name in names:
            path = self.storage_dir / name
            if not path.is_dir() or path.is_symlink():
                continue
            self._session(path, full, report)
        if full:
            self._tidy(set(names))
        return report

    def stop(self) -> None:
        """Start no more uploads (the service was asked to stop); those in flight finish or time out."""
        self._stopping = True
        self._broken.set()

    def _session(self, path: Path, full: bool, report: Report) -> None:
        st = self._states.get(path.name)
        if st is None:
            st = self._states[path.name] = sync_state.load(path)
        seen = look(path, st, full=full, clock_ns=self._clock_ns)
        changed = bool(seen.gone)
        for rel in seen.gone:
            del st.files[rel]
        messages = [p for p in seen.pending if "/messages/" in p.rel]
        others = [p for p in seen.pending if "/messages/" not in p.rel]
        ok = True
        for batch in (messages, others):
            if not ok:
                break  # agent.json and session.json wait until their messages are there
            unsaved, saved_at = 0, time.monotonic()
            futures = [(p, self._pool.submit(self._upload, path, p, st.files.get(p.rel))) for p in batch]
            for p, fut in futures:
                outcome = self._outcome(path.name, p, fut, report)
                if outcome is None:
                    ok = False
                    continue
                st.files[p.rel] = outcome
                changed = True
                unsaved += 1
                if unsaved >= SAVE_EVERY or time.monotonic() - saved_at >= SAVE_EVERY_S:
                    sync_state.save(path, st)
                    unsaved, saved_at = 0, time.monotonic()
        # Directory mtimes are trusted next time only when everything they held was confirmed; otherwise the
        # session is listed again in full, so nothing that failed is skipped by a quick look.
        new_dirs = seen.dirs if ok else {}
        if changed or new_dirs != st.dirs:
            st.dirs = new_dirs
            sync_state.save(path, st)

    def _outcome(self, session: str, p: Pending, fut: Future[tuple[Record, bool]], report: Report) -> Record | None:
        where = f"{session}/{p.rel}"
        try:
            record, put = fut.result()
        except Unusable as e:
            report.unusable += 1
            report.note(f"{where} is not uploaded: {e}")
            return None
        except Conflict as e:
            report.conflicts += 1
            report.note(f"{e}; not overwritten (two devices with one sync.device_id?)")
            return None
        except FileNotFoundError:
            return None  # gone since the look (its session was deleted); nothing to upload
        except Skipped:
            report.failed += 1
            return None
        except Exception as e:
            if not is_transient(e):
                raise  # a bug: the service stops with a traceback (and systemd restarts it)
            report.failed += 1
            report.note(f"upload failed: {describe(e)}")
            return None
        if put:
            report.uploaded += 1
        else:
            report.already += 1
        return record

    def _upload(self, session_path: Path, p: Pending, previous: Record | None) -> tuple[Record, bool]:
        """(what S3 confirmed, whether a PUT was made). Runs on a pool thread."""
        if self._broken.is_set():
            raise Skipped
        body, size, mtime_ns = read_file(session_path / p.rel)
        check_file(p.rel, body, session_path.name)
        crc = crc32_b64(body)
        if previous is not None and previous.crc32 == crc and previous.size == size:
            return Record(size, mtime_ns, crc, previous.etag), False  # touched, not changed
        self._throttle.take(len(body))
        try:
            etag, put = self.bucket.put(self.bucket.key(session_path.name, p.rel), body, previous)
        except Exception as e:
            if is_transient(e):
                self._broken.set()  # uploads not yet started give up at once: no minutes of retries offline
            raise
        return Record(size, mtime_ns, crc, etag), put

    def _tidy(self, present: set[str]) -> None:
        """Drop the states of sessions no longer stored (retention deleted them; S3 keeps its copy), and temp
        files a killed state write left behind."""
        state_dir = self.storage_dir / sync_state.STATE_DIR
        try:
            entries = list(os.scandir(state_dir))
        except FileNotFoundError:
            return
        now = time.time()
        for e in entries:
            if e.name.endswith(".json") and e.name[: -len(".json")] not in present:
                sync_state.forget(self.storage_dir / e.name[: -len(".json")])
                self._states.pop(e.name[: -len(".json")], None)
            elif is_temp(e.name):
                with contextlib.suppress(FileNotFoundError):
                    if now - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S:
                        os.unlink(e.path)


def run_forever(
    syncer: Syncer,
    interval_s: float,
    backoff_max_s: float,
    wait: Callable[[float], bool],
    *,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    on_cycle: Callable[[Report], None] | None = None,
) -> None:
    """Cycle until `wait(seconds)` returns True (asked to stop; `threading.Event.wait` in the service, a
    simulated clock in tests): a full look first, then quick ones every `interval_s`. While uploads fail, the
    waits back off (1 s doubling to `backoff_max_s`, each cut by up to half at random so a fleet that lost
    S3 together does not come back in step): no busy loop offline, and the first cycle after the network
    is back uploads everything written meanwhile."""
    backoff = Backoff(min(1.0, backoff_max_s), backoff_max_s, jitter=0.5, clock=clock, rand=rand)
    full = True
    down_since: float | None = None
    told: set[str] = set()  # conflicts and unusable files are logged once, not every cycle
    while True:
        report = syncer.cycle(full=full)
        if on_cycle:
            on_cycle(report)
        if report.failed:
            delay = backoff.failed()
            if down_since is None:
                down_since = clock()
                log.warning("sync: %s; retrying with backoff", report.errors[0] if report.errors else "failed")
        else:
            full = False
            delay = interval_s
            if down_since is not None:
                log.info("sync: uploads work again after %.0f s", clock() - down_since)
                down_since = None
                backoff.reset()
        if report.uploaded:
            log.info("sync: %d files uploaded", report.uploaded)
        for line in report.errors:
            if line not in told and not line.startswith("upload failed"):
                told.add(line)
                log.warning("sync: %s", line)
        if wait(delay):
            return
