"""The sync service through outages: a fault-injecting proxy (`tests/s3proxy.py`) between the real boto3 client
(`bucket.make_client`) and moto, a store written by the real store (`tests/talk.py`).

Refused connections, resets (at once and in the middle of a PUT's body), 500 and 503 answers, stalls longer
than the client's read timeout; ten minutes of downtime in simulated time through `run_forever`; a device
that lost its sync state; the bandwidth cap; the long-running `edgevoice sync` process across an outage.
Whatever the fault: nothing is recorded as confirmed that S3 does not hold with that checksum ("none
marked synced early"), and once the network is back everything written meanwhile is uploaded, once.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgevoice.sync import bucket as bucket_mod
from edgevoice.sync import state
from edgevoice.sync.bucket import Bucket, make_client
from edgevoice.sync.service import Report, Syncer, run_forever
from edgevoice.sync.throttle import Throttle
from tests.s3proxy import FaultProxy
from tests.s3server import client, s3_server
from tests.synctest import (
    ACCESS_KEY,
    SECRET,
    assert_all_in_s3,
    cli_env,
    confirmed_in_s3,
    edgevoice_exe,
    head,
    key,
    local_files,
    missing_from_s3,
    sync_settings,
    versioned_bucket,
    write_config,
)
from tests.talk import converse

pytestmark = pytest.mark.timeout(120)

SESSION = "kitchen"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with s3_server() as endpoint:
        versioned_bucket(endpoint)
        yield endpoint


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real conversation (two turns with the offline model: six files), recorded once per module."""
    store = tmp_path_factory.mktemp("recorded") / "sessions"
    converse(store, SESSION, "my name is alice", "what is my name")
    return store


@pytest.fixture
def store(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "sessions"
    shutil.copytree(recorded, copy)
    return copy


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The standard credential chain `make_client` uses, fed dummies; nothing from ~/.aws or the instance."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy.to(moto) as p:
        yield p


class Rig:
    """A Syncer whose client (`make_client`, as the service builds it) talks to moto through the proxy; a
    direct client to moto for the checks."""

    def __init__(self, moto: str, proxy: FaultProxy, store: Path, prefix: str, **syncer: Any) -> None:
        self.proxy = proxy
        self.store = store
        self.session = store / f"session_{SESSION}"
        self.prefix = prefix
        self.s3 = client(moto)
        self.settings = sync_settings(proxy.endpoint, prefix)
        self.bucket = Bucket(make_client(self.settings), self.settings, "dev-a", state.writer_id(store))
        self.syncer = Syncer(store, self.bucket, **syncer)

    def key(self, rel: str) -> str:
        return key(self.prefix, self.session.name, rel)

    def pending(self) -> list[str]:
        """Local files of the session the bucket does not hold yet."""
        return [rel for rel in state.session_files(self.session) if head(self.s3, self.key(rel)) is None]


@pytest.fixture
def rig(moto: str, proxy: FaultProxy, store: Path, aws_env: None, request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(moto, proxy, store, prefix=f"o-{request.node.name[5:45].replace('_', '-').replace('[', '-').strip(']')}")
    yield r
    r.syncer.close()


# -- faults ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    start: Callable[[FaultProxy, int], None]
    """Switch the proxy to the fault; the int is the byte count of a PUT's head on the wire."""
    error: str
    """What the report's error line names."""
    reaches_proxy: bool
    """Each attempt's request head gets through to the proxy (counted in `proxy.methods`)."""


FAULTS = {
    "refused": Fault(lambda p, _: p.refuse(), "EndpointConnectionError", False),
    "reset-at-once": Fault(lambda p, _: p.reset(0), "ConnectionClosedError", False),
    # The head and the first 100 bytes of the body go through, then RST: S3 sees half a PUT.
    "reset-mid-body": Fault(lambda p, head_bytes: p.reset(head_bytes + 100), "ConnectionClosedError", True),
    "http-500": Fault(lambda p, _: p.http_error(500), "InternalError (HTTP 500)", True),
    "http-503": Fault(lambda p, _: p.http_error(503), "ServiceUnavailable (HTTP 503)", True),
    # Bytes are held, no answer: the client's read timeout (made 1 s here, 20 s in the service) gives up.
    # (The proxy holds a stalled connection's bytes unparsed, so its heads are not counted.)
    "stall": Fault(lambda p, _: p.stall(), "ReadTimeoutError", False),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_during_a_fault_nothing_is_marked_synced_early_and_after_it_everything_written_meanwhile_is_uploaded(
    fault: str, moto: str, proxy: FaultProxy, store: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(moto, proxy, store, prefix=f"fault-{fault}")
    try:
        first = rig.syncer.cycle(full=True)  # at the normal read timeout: a busy moto may take over a second
        assert first.complete and first.uploaded == 6
        # What a PUT's head costs on the wire: the bytes sent minus the bodies, per request (all were PUTs).
        bodies = sum(len(b) for b in local_files(store).values())
        assert proxy.methods == {"PUT": 6}
        head_bytes = (proxy.bytes_up - bodies) // 6
        assert 600 < head_bytes < 2000, head_bytes
        assert confirmed_in_s3(rig.s3, rig.prefix, rig.session) == 6

        if fault == "stall":  # the stalls are waited out by a short read timeout (make_client reads it)
            monkeypatch.setattr(bucket_mod, "READ_TIMEOUT_S", 1.0)
            rig.syncer.bucket = dataclasses.replace(rig.bucket, client=make_client(rig.settings))
        FAULTS[fault].start(proxy, head_bytes)
        for round_ in range(2):  # written during the outage: first before a failed cycle, then between two
            converse(store, SESSION, f"note {round_} while the network is down")
            new = rig.pending()
            assert len(new) == 2 * (round_ + 1)
            puts = proxy.methods["PUT"]
            report = rig.syncer.cycle(full=False)
            assert not report.complete and report.uploaded == 0 and report.already == 0
            assert report.failed == len(new)  # each pending file failed, or was not tried once one had
            assert report.errors and all(FAULTS[fault].error in e for e in report.errors), report.errors
            tried = proxy.methods["PUT"] - puts
            if FAULTS[fault].reaches_proxy:  # botocore's standard mode: three attempts at each file it tried
                assert tried > 0 and tried % 3 == 0, tried
            else:
                assert tried == 0
            # None marked synced early: every record is in S3 with its checksum and size; the new files are
            # neither recorded nor in S3 (a PUT cut in its body stored nothing), and the session is unsynced.
            assert confirmed_in_s3(rig.s3, rig.prefix, rig.session) == 6
            assert not set(new) & set(state.load(rig.session).files)
            assert rig.pending() == new
            assert not state.is_synced(rig.session)

        proxy.pass_through()
        after = rig.syncer.cycle(full=False)  # a quick look: the failed cycles left the directories untrusted
        assert after.complete and after.uploaded == 4 and after.failed == 0, after
        assert_all_in_s3(rig.s3, rig.prefix, store)
        assert confirmed_in_s3(rig.s3, rig.prefix, rig.session) == 10
    finally:
        rig.syncer.close()


# -- minutes of downtime, simulated -----------------------------------------------------------------------


@dataclass
class Trace:
    delays: list[tuple[float, float]] = field(default_factory=list)
    """(simulated time the wait started, its length)."""
    reports: list[tuple[float, Report]] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    """Simulated times at which a turn (two messages) was stored."""
    recovered_at: float | None = None

    def outage_delays(self) -> list[float]:
        return [d for t, d in self.delays if self.recovered_at is None or t < self.recovered_at]


OUTAGE_S = 600.0
CAP_S = 60.0
INTERVAL_S = 30.0
WRITE_AT = (100.0, 300.0, 500.0)


def simulate_outage(rig: Rig, rand: Callable[[], float], checks: Callable[[Report], None]) -> Trace:
    """`run_forever` on a fake clock: S3 refused for the first ten simulated minutes, turns stored at
    WRITE_AT meanwhile (from inside `wait`, between cycles), one more after the second good cycle; stops
    after the fourth good cycle. `checks` runs on the first good cycle's report."""
    now = [0.0]
    trace = Trace()
    to_write = list(WRITE_AT)
    rig.proxy.refuse()

    def on_cycle(report: Report) -> None:
        trace.reports.append((now[0], report))
        good = [r for _, r in trace.reports if not r.failed]
        if len(good) == 1 and not report.failed:
            checks(report)

    def wait(delay: float) -> bool:
        trace.delays.append((now[0], delay))
        now[0] += delay
        while to_write and to_write[0] <= now[0]:
            converse(rig.store, SESSION, f"written offline at {to_write.pop(0):.0f} s")
            trace.written.append(now[0])
        if rig.proxy.mode == "refuse" and now[0] >= OUTAGE_S:
            rig.proxy.pass_through()
            trace.recovered_at = now[0]
        good = sum(not r.failed for _, r in trace.reports)
        if good == 2 and len(trace.written) == len(WRITE_AT):
            converse(rig.store, SESSION, "written after the outage")
            trace.written.append(now[0])
        return good >= 4 or len(trace.delays) > 200  # the bound: a busy loop fails the asserts, not the suite

    run_forever(rig.syncer, INTERVAL_S, CAP_S, wait, clock=lambda: now[0], rand=rand, on_cycle=on_cycle)
    return trace


def everything_uploaded(rig: Rig, uploaded: int) -> Callable[[Report], None]:
    def check(report: Report) -> None:
        assert report.complete and report.uploaded == uploaded, report
        assert state.is_synced(rig.session)
        assert_all_in_s3(rig.s3, rig.prefix, rig.store)

    return check


def test_ten_minutes_of_downtime_back_off_to_the_cap_without_a_busy_loop_and_the_first_good_cycle_uploads_it_all(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.sync")
    # The six recorded files and two messages per turn stored during the outage: all go in the first good cycle.
    trace = simulate_outage(rig, lambda: 0.0, everything_uploaded(rig, 6 + 2 * len(WRITE_AT)))

    outage = trace.outage_delays()
    # Without jitter the waits are exactly 1 s doubling to the cap, then the cap: 15 cycles in 600 s.
    assert outage == [1, 2, 4, 8, 16, 32] + [CAP_S] * 9
    assert min(outage) >= 0.5 and max(outage) == CAP_S
    assert len(outage) <= 20
    assert trace.recovered_at == 603.0
    assert [(t, r.failed > 0) for t, r in trace.reports][: len(outage)] == [
        (t, True) for t, _ in trace.delays[: len(outage)]
    ]
    # Back up: the interval again, not the backoff; the turn stored after the outage goes in the next cycle.
    after = [d for t, d in trace.delays if t >= 603.0]
    assert after == [INTERVAL_S] * 4
    good = [r for t, r in trace.reports if not r.failed]
    assert [r.uploaded for r in good] == [12, 0, 2, 0]
    assert_all_in_s3(rig.s3, rig.prefix, rig.store)

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edgevoice.sync.service"]
    down = [m for lvl, m in lines if "retrying with backoff" in m]
    up = [m for lvl, m in lines if "uploads work again" in m]
    assert len(down) == 1 and "EndpointConnectionError" in down[0]
    assert [lvl for lvl, m in lines if m in down] == [logging.WARNING]
    assert up == ["sync: uploads work again after 603 s"]
    assert [lvl for lvl, m in lines if m in up] == [logging.INFO]
    assert all("\n" not in m for _, m in lines)
    assert SECRET not in caplog.text and ACCESS_KEY not in caplog.text


def test_with_jitter_every_wait_lies_between_half_and_all_of_its_step_and_at_the_cap_within_cap_over_two_and_cap(
    rig: Rig,
) -> None:
    seed = 20240611
    rng = random.Random(seed)
    trace = simulate_outage(rig, rng.random, everything_uploaded(rig, 6 + 2 * len(WRITE_AT)))
    outage = trace.outage_delays()
    steps = [min(2.0**i, CAP_S) for i in range(len(outage))]
    assert all(step / 2 <= d <= step for d, step in zip(outage, steps, strict=True)), (seed, outage)
    at_cap = [d for d, step in zip(outage, steps, strict=True) if step == CAP_S]
    assert len(at_cap) >= 5 and all(CAP_S / 2 <= d <= CAP_S for d in at_cap), (seed, at_cap)
    assert len(set(at_cap)) == len(at_cap)  # really jittered: a fleet does not come back in step
    assert min(outage) >= 0.5
    # Shorter waits mean more cycles, still bounded: the doubling steps, then at least cap/2 between tries.
    assert len(outage) <= 6 + OUTAGE_S / (CAP_S / 2) + 1
    assert [r.uploaded for t, r in trace.reports if not r.failed] == [12, 0, 2, 0]


# -- conditional writes: a device that lost its state ------------------------------------------------------


def etags_of(rig: Rig) -> dict[str, str]:
    objects = {rel: head(rig.s3, rig.key(rel)) for rel in state.session_files(rig.session)}
    return {rel: obj["ETag"] for rel, obj in objects.items() if obj is not None}


def test_a_device_that_lost_its_state_re_syncs_without_uploading_anything_again(rig: Rig) -> None:
    """The state file deleted (a card restored from an old image, a kill before the first save): each
    conditional PUT is refused with 412, a HEAD finds the same checksum, the file counts as confirmed."""
    assert rig.syncer.cycle(full=True).uploaded == 6
    etags = etags_of(rig)
    rig.syncer.close()
    state.forget(rig.session)
    assert not state.is_synced(rig.session)

    rig.proxy.methods.clear()
    again = Syncer(rig.store, Bucket(make_client(rig.settings), rig.settings, "dev-a", state.writer_id(rig.store)))
    try:
        report = again.cycle(full=True)
    finally:
        again.close()
    assert report.complete and report.uploaded == 0 and report.already == 6
    assert rig.proxy.methods == {"PUT": 6, "HEAD": 6}
    assert etags_of(rig) == etags
    assert_all_in_s3(rig.s3, rig.prefix, rig.store)  # one version of each key: nothing was stored twice
    assert confirmed_in_s3(rig.s3, rig.prefix, rig.session) == 6


# -- the bandwidth cap ------------------------------------------------------------------------------------


def test_the_bandwidth_cap_spaces_the_uploads_by_their_bytes_after_one_seconds_burst(
    moto: str, store: Path, aws_env: None
) -> None:
    converse(store, SESSION, *(f"more words, number {i}" for i in range(5)))
    total = sum(len(b) for b in local_files(store).values())
    rate = total // 6
    clock = [1000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    settings = sync_settings(moto, "bandwidth")
    bucket = Bucket(make_client(settings), settings, "dev-a", state.writer_id(store))
    syncer = Syncer(store, bucket, throttle=Throttle(rate, clock=lambda: clock[0], sleep=sleep))
    try:
        report = syncer.cycle(full=True)
    finally:
        syncer.close()
    assert report.complete and report.uploaded == 16
    assert sum(slept) == pytest.approx((total - rate) / rate, rel=1e-9)
    assert 5 - 1e-9 <= sum(slept) <= 5 + 6 / rate  # about five seconds for six seconds' worth of bytes
    assert_all_in_s3(client(moto), "bandwidth", store)


# -- the long-running service as a process ----------------------------------------------------------------


def test_the_service_process_rides_out_an_outage_uploads_what_was_written_and_stops_cleanly_on_sigterm(
    moto: str, proxy: FaultProxy, store: Path, tmp_path: Path
) -> None:
    s3 = client(moto)
    cfg = write_config(tmp_path / "edgevoice.toml", store, proxy.endpoint, "service", interval_s=1, backoff_max_s=2)
    proxy.refuse()
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [edgevoice_exe(), "sync", "--config", str(cfg)],
            env=cli_env(tmp_path / "home"),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        time.sleep(1.5)
        converse(store, SESSION, "written while S3 cannot be reached")
        time.sleep(1.5)
        assert proc.poll() is None, err.read_text()
        assert missing_from_s3(s3, "service", store)  # nothing got through the refusing proxy
        assert not state.is_synced(store / f"session_{SESSION}")
        proxy.pass_through()
        deadline = time.monotonic() + 20
        while missing_from_s3(s3, "service", store) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not missing_from_s3(s3, "service", store), err.read_text()
        # Up again, a turn stored now goes within an interval or two (the quick look, by directory mtimes).
        converse(store, SESSION, "written after the network came back")
        deadline = time.monotonic() + 20
        while missing_from_s3(s3, "service", store) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not missing_from_s3(s3, "service", store), err.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            pytest.fail(f"edgevoice sync did not stop within 5 s of SIGTERM:\n{err.read_text()}")
    out = err.read_text()
    assert code == 0, out
    assert_all_in_s3(s3, "service", store)
    assert SECRET not in out and ACCESS_KEY not in out
    lines = out.splitlines()
    assert all(line.startswith(("INFO ", "WARNING ")) for line in lines), out  # one-line logs, no traceback
    down = [ln for ln in lines if "retrying with backoff" in ln]
    up = [ln for ln in lines if "uploads work again" in ln]
    assert len(down) == 1 and down[0].startswith("WARNING edgevoice.sync.service: sync: upload failed: "), out
    assert "EndpointConnectionError" in down[0], out
    assert len(up) == 1 and up[0].startswith("INFO edgevoice.sync.service: sync: uploads work again after "), out
    # Every cycle that stored files says how many (a cycle that met the proxy re-binding may upload some and
    # fail others); that each file went once is what the bucket's versions show, above.
    uploaded = [int(ln.split("sync: ")[1].split()[0]) for ln in lines if ln.endswith(" files uploaded")]
    assert 0 < sum(uploaded) <= len(local_files(store)), out


def test_sigterm_stops_the_service_within_its_grace_while_an_upload_hangs_on_a_stalled_network(
    moto: str, proxy: FaultProxy, store: Path, tmp_path: Path
) -> None:
    """A stalled upload could hold the service for 3 attempts of a 20 s read timeout; killing it is safe, so a
    SIGTERM ends it within STOP_GRACE_S with exit 0, and nothing is recorded that S3 did not confirm."""
    from edgevoice.commands.sync import STOP_GRACE_S

    cfg = write_config(tmp_path / "edgevoice.toml", store, proxy.endpoint, "stalled", interval_s=1)
    proxy.stall()
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [edgevoice_exe(), "sync", "--config", str(cfg)],
            env=cli_env(tmp_path / "home"),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 20
        while proxy.connections == 0 and time.monotonic() < deadline:  # the first PUT is on its way, and stalls
            time.sleep(0.05)
        assert proxy.connections > 0, err.read_text()
        time.sleep(1.0)  # its bytes are in (stalled mode reads and holds them)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=STOP_GRACE_S + 5)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert code == 0, err.read_text()
    assert took < STOP_GRACE_S + 2, took
    assert confirmed_in_s3(client(moto), "stalled", store / f"session_{SESSION}") == 0  # nothing recorded
    assert not state.is_synced(store / f"session_{SESSION}")
