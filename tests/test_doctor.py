"""`edgevoice doctor` against real parts: ALSA `file` PCMs from a per-test ~/.asoundrc, moto's S3 in its own
process (behind a fault proxy when it must be down), listening and closed sockets on 127.0.0.1 for the model
endpoint, a TLS listener with a self-signed certificate, the real flash under tmp_path.

The kernel clock of a test machine need not be NTP-synchronized (this one is not), so the end-to-end runs
that must pass start doctor through `LAUNCHER`, which replaces only the adjtimex reading with a synchronized
one and then runs the console script's `main` in a process of its own. One run uses the installed script
itself and expects exactly what this machine's clock says. The clock check itself is driven directly.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevoice import pcm
from edgevoice.health import FAIL, OK, SKIP, Check, audio, clock, credentials, network, storage, sync
from edgevoice.health.plan import ORDER
from edgevoice.health.runner import Step
from edgevoice.health.runner import run as run_steps
from edgevoice.settings import AudioSettings, ModelSettings, SessionSettings, Settings, SyncSettings
from edgevoice.sync import state as sync_state
from tests.alsa import AsoundRc, alsa_home
from tests.cloudfake import Listener, self_signed
from tests.s3proxy import FaultProxy
from tests.s3server import client, moto_process

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
LAUNCHER = """
import sys
import edgevoice.health.clock as clock
clock.adjtimex = lambda: clock.KernelClock(status=0, maxerror_us=250_000)  # synchronized, 0.25 s
from edgevoice.cli import main
sys.exit(main(sys.argv[1:]))
"""
BUCKET = "edgevoice-doctor"
KEY = "sk-doctorFAKEkey0123456789abcdefXYZ"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYDOCTORKEY"
RATE = 16000


# -- material ---------------------------------------------------------------------------------------


def write_raw(path: Path, x: np.ndarray[Any, Any]) -> Path:
    path.write_bytes(np.asarray(x, dtype="<i2").tobytes())
    return path


def tone(path: Path, seconds: float = 2.5, amplitude: float = 0.25) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    return write_raw(path, np.round(amplitude * 32767 * np.sin(2 * np.pi * 440 * t)))


def silence(path: Path, seconds: float = 2.5) -> Path:
    return write_raw(path, np.zeros(int(seconds * RATE)))


def clipped(path: Path, seconds: float = 2.5) -> Path:
    """A square wave at full scale: what a line input fed a mic's bias gives."""
    t = np.arange(int(seconds * RATE)) / RATE
    return write_raw(path, np.where(np.sin(2 * np.pi * 100 * t) >= 0, 32767, -32768))


def stored_session(storage_dir: Path, session_id: str, *, age_s: float = 0.0) -> Path:
    """A session directory in the store's layout, its files last changed `age_s` ago."""
    root = storage_dir / f"session_{session_id}"
    messages = root / "agents" / "agent_edgevoice" / "messages"
    messages.mkdir(parents=True)
    (root / "session.json").write_text(json.dumps({"session_id": session_id}))
    (messages.parent / "agent.json").write_text(json.dumps({"agent_id": "edgevoice"}))
    (messages / "message_0.json").write_text(json.dumps({"message_id": 0}))
    when = time.time() - age_s
    for path in root.rglob("*"):
        os.utime(path, (when, when))
    return root


def mark_synced(session_path: Path) -> None:
    """Record every file as S3 confirmed it, as the sync service does after its uploads."""
    files = {
        rel: sync_state.Record(st.st_size, st.st_mtime_ns, "AAAAAA==", '"etag"')
        for rel, st in sync_state.session_files(session_path).items()
    }
    sync_state.save(session_path, sync_state.SessionState(files=files))


def free_port() -> int:
    """A port nothing listens on: connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_process() as endpoint:
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def model_port() -> Iterator[int]:
    """A listening socket: the kernel completes TCP handshakes into its backlog, which is all doctor asks."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield int(server.getsockname()[1])


# -- the console script -----------------------------------------------------------------------------


class Device:
    """One speaker's files for a doctor run: PCMs, store, config and environment; tests break one part."""

    def __init__(self, tmp_path: Path, alsa: AsoundRc, s3_endpoint: str, model_port: int) -> None:
        self.tmp = tmp_path
        self.alsa = alsa
        self.mic = tone(tmp_path / "mic.raw")
        self.store = tmp_path / "sessions"
        stored_session(self.store, "default")
        self.sections: dict[str, dict[str, str]] = {
            "audio": {"capture_device": "mic", "playback_device": "spk"},
            "session": {"dir": str(self.store)},
            "model": {"provider": "openai_realtime", "endpoint": f"ws://127.0.0.1:{model_port}"},
            "sync": {"bucket": BUCKET, "endpoint_url": s3_endpoint, "device_id": "dev-a"},
        }
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(alsa.home),  # the PCMs; no ~/.aws
            "OPENAI_API_KEY": KEY,
            "AWS_ACCESS_KEY_ID": "AKIAEDGEVOICEDOCTOR1",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def config(self) -> Path:
        self.alsa.capture("mic", self.mic).playback("spk", self.tmp / "out.raw").write()
        path = self.tmp / "edgevoice.toml"
        path.write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
                for name, keys in self.sections.items()
            )
        )
        return path

    def doctor(self, *args: str, verbose: bool = False, launcher: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", LAUNCHER] if launcher else [EDGEVOICE]
        return subprocess.run(
            [*cmd, *(["-v"] if verbose else []), "doctor", "--config", str(self.config()), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def device(tmp_path: Path, alsa: AsoundRc, s3: str, model_port: int) -> Device:
    return Device(tmp_path, alsa, s3, model_port)


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The table: check name -> (status, detail)."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    table = {}
    for line in lines[1:-1]:
        name, status, detail = line.split(None, 2)
        table[name] = (status, detail)
    assert list(table) == list(ORDER)
    return table


def test_all_pass_prints_the_table_and_exits_0_and_never_a_key(device: Device) -> None:
    out = device.doctor(verbose=True)  # DEBUG from edgevoice's loggers too: still no key
    assert out.returncode == 0, out.stdout + out.stderr
    table = rows(out.stdout)
    assert {name: status for name, (status, _) in table.items()} == dict.fromkeys(ORDER, OK)
    assert out.stdout.splitlines()[-1] == "doctor: ok"
    assert table["capture"][1] == "mic: 16000 Hz, period 480 frames (30 ms), buffer 1920 frames"
    assert table["playback"][1].startswith("spk: 16000 Hz, period 480 frames")
    assert table["mic_level"][1] == "mic: RMS -15.1 dBFS, peak -12.0 dBFS over 2 s"
    assert "kernel: synchronized" in table["clock"][1]
    assert table["credentials"][1] == "OPENAI_API_KEY found; AWS credentials for sync found (env)"
    assert table["endpoint"][1].startswith("127.0.0.1:") and "no TLS" in table["endpoint"][1]
    assert table["sync_backlog"][1].startswith("1 of 1 session(s) not yet synced")
    everything = out.stdout + out.stderr
    for secret in (KEY, AWS_SECRET, "AKIAEDGEVOICEDOCTOR1", KEY[:12], KEY[-12:]):
        assert secret not in everything


def test_json_lines_from_the_installed_script_on_this_machines_clock(device: Device) -> None:
    out = device.doctor("--json", launcher=False)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["name"] for line in lines] == list(ORDER)
    assert all(set(line) == {"name", "status", "detail"} for line in lines)
    status = {line["name"]: line["status"] for line in lines}
    # The one row that depends on this machine: what the clock check says here, in this process.
    expected_clock = clock.check_clock().status
    assert status.pop("clock") == expected_clock
    assert status == dict.fromkeys(status, OK)
    assert out.returncode == (0 if expected_clock == OK else 1), out.stderr
    assert KEY not in out.stdout + out.stderr


def _missing_capture(d: Device) -> None:
    d.mic = d.tmp / "unplugged.raw"  # defined in ~/.asoundrc, absent: a USB mic not plugged in


def _undefined_playback(d: Device) -> None:
    d.sections["audio"]["playback_device"] = "nosuch"


def _silent_mic(d: Device) -> None:
    d.mic = silence(d.tmp / "zeros.raw")


def _clipped_mic(d: Device) -> None:
    d.mic = clipped(d.tmp / "clipped.raw")


def _quarantine(d: Device) -> None:
    q = d.store / "session_default" / "quarantine"
    q.mkdir()
    (q / "message_1.json").write_text("{")
    (q / "message_1.json.reason").write_text("not valid JSON\n")


def _no_key(d: Device) -> None:
    del d.env["OPENAI_API_KEY"]


def _endpoint_down(d: Device) -> None:
    d.sections["model"]["endpoint"] = f"ws://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("breakage", "failing", "says"),
    [
        (_missing_capture, "capture", "'mic' does not open (No such file or directory"),
        (_undefined_playback, "playback", "audio.playback_device 'nosuch' is not a PCM alsa-lib knows"),
        (_silent_mic, "mic_level", "digital silence for 2 s (every sample 0)"),
        (_clipped_mic, "mic_level", "clipped (100% of samples at full scale"),
        (_quarantine, "store", "1 quarantined file(s) in session(s) default"),
        (_no_key, "credentials", "no OPENAI_API_KEY for openai_realtime"),
        (_endpoint_down, "endpoint", "connection refused"),
    ],
)
def test_each_failure_alone_exits_1_naming_its_check(
    device: Device, breakage: Callable[[Device], None], failing: str, says: str
) -> None:
    breakage(device)
    out = device.doctor()
    assert out.returncode == 1, out.stdout + out.stderr
    table = rows(out.stdout)
    assert [name for name, (status, _) in table.items() if status == FAIL] == [failing]
    assert says in table[failing][1]
    assert out.stdout.splitlines()[-1] == f"doctor: 1 of 10 checks failed: {failing}"
    if failing == "capture":
        assert table["mic_level"] == (SKIP, "the capture device did not open")
    assert "ALSA lib" not in out.stderr  # alsa-lib's own complaints went to logging, at DEBUG


def test_s3_down_fails_the_s3_row_and_the_backlog_waits(device: Device, s3: str) -> None:
    with FaultProxy.to(s3) as proxy:
        proxy.refuse()
        device.sections["sync"]["endpoint_url"] = proxy.endpoint
        started = time.monotonic()
        out = device.doctor()
        took = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr
    table = rows(out.stdout)
    assert [name for name, (status, _) in table.items() if status == FAIL] == ["s3"]
    assert "EndpointConnectionError" in table["s3"][1]
    assert table["sync_backlog"][0] == OK and table["sync_backlog"][1].endswith("(waiting for S3)")
    assert took < 15


def test_everything_broken_at_once_still_answers_within_seconds(device: Device, s3: str, model_port: int) -> None:
    for breakage in (_missing_capture, _undefined_playback, _quarantine, _no_key):
        breakage(device)
    # A TLS endpoint whose peer accepts the connection and never answers the handshake, and an S3 that
    # accepts requests and never answers them (botocore would wait 20 s a read, three times).
    device.sections["model"]["endpoint"] = f"wss://127.0.0.1:{model_port}"
    with FaultProxy.to(s3) as proxy:
        proxy.stall()
        device.sections["sync"]["endpoint_url"] = proxy.endpoint
        started = time.monotonic()
        out = device.doctor()
        took = time.monotonic() - started
        proxy.pass_through()
    assert out.returncode == 1, out.stdout + out.stderr
    table = rows(out.stdout)
    failed = [name for name, (status, _) in table.items() if status == FAIL]
    assert failed == ["capture", "playback", "store", "credentials", "endpoint", "s3"]
    assert table["endpoint"][1].endswith("TLS handshake did not finish within 3 s")
    assert table["s3"][1] == "no answer within 6 s"
    assert took < 10  # the S3 check's 6 s bound, the other lanes meanwhile


def test_bad_config_exits_2_with_one_line(device: Device) -> None:
    device.sections["audio"]["rate"] = "fast"
    out = device.doctor(launcher=False)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.splitlines() == ["edgevoice: config: audio.rate must be an integer (got 'fast')"]


# -- audio, directly --------------------------------------------------------------------------------


def test_levels_are_dbfs_of_the_samples() -> None:
    x = np.round(0.5 * 32767 * np.sin(2 * np.pi * np.arange(16000) / 16)).astype("<i2")
    rms, peak, share = pcm.levels(x.tobytes())
    assert math.isclose(rms, 20 * math.log10(0.5 / math.sqrt(2)), abs_tol=0.01)
    assert math.isclose(peak, 20 * math.log10(0.5), abs_tol=0.01)
    assert share == 0
    assert pcm.levels(bytes(640))[:2] == (-math.inf, -math.inf)


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [(tone, OK, "RMS -15.1 dBFS"), (silence, FAIL, "digital silence"), (clipped, FAIL, "clipped")],
)
def test_mic_level_reads_the_given_duration(
    alsa: AsoundRc, tmp_path: Path, make: Callable[[Path], Path], status: str, says: str
) -> None:
    alsa.capture("mic", make(tmp_path / "in.raw")).write()
    check = audio.check_mic_level(AudioSettings(capture_device="mic"), seconds=0.25)
    assert (check.name, check.status) == ("mic_level", status)
    assert says in check.detail and " 0.25 s" in check.detail


def test_mic_level_fails_a_device_that_delivers_nothing() -> None:
    class Stalled:
        def read(self) -> tuple[int, bytes]:
            return 0, b""  # what a non-blocking read gives while no period is ready

        def info(self) -> dict[str, Any]:
            return {"rate": 16000}

        def close(self) -> None:
            pass

    ticks = iter(range(100))
    check = audio.check_mic_level(
        AudioSettings(), seconds=2, opener=lambda *a, **k: Stalled(), clock=lambda: next(ticks), sleep=lambda s: None
    )
    assert check.status == FAIL and "device stalled" in check.detail


def test_capture_reports_a_resampled_rate_and_playback_fails_off_pitch(alsa: AsoundRc, tmp_path: Path) -> None:
    # A hw: device that runs only at 48 kHz. alsa-lib's file and null plugins take any rate, so the open
    # itself is a stand-in here; the name is still looked up in the real configuration.
    alsa.capture("fixed", tone(tmp_path / "in.raw")).write()

    class Fixed48k:
        def info(self) -> dict[str, Any]:
            return {"rate": 48000, "period_size": 1440, "buffer_size": 5760}

        def read(self) -> tuple[int, bytes]:
            raise AssertionError("not read")

        def close(self) -> None:
            pass

    settings = AudioSettings(capture_device="fixed", playback_device="fixed")
    capture = audio.check_capture(settings, opener=lambda *a, **k: Fixed48k())
    playback = audio.check_playback(settings, opener=lambda *a, **k: Fixed48k())
    assert capture == Check(
        "capture", OK, "fixed: 48000 Hz, period 1440 frames (30 ms), buffer 5760 frames (asked 16000 Hz: resampled)"
    )
    assert playback.status == FAIL and "runs at 48000 Hz, not audio.playback_rate 16000" in playback.detail


# -- storage, directly ------------------------------------------------------------------------------


def statvfs(*, free: int, total: int, flag: int = 0) -> Callable[[str], os.statvfs_result]:
    block = 4096
    result = os.statvfs_result((block, block, total // block, free // block, free // block, 1000, 900, 900, flag, 255))
    return lambda path: result


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [(40 * 2**20, 2**40, FAIL), (2 * 2**30, 64 * 2**30, FAIL), (8 * 2**30, 64 * 2**30, OK), (60 * 2**20, 2**30, OK)],
)
def test_disk_fails_under_50_mib_or_5_percent(tmp_path: Path, free: int, total: int, status: str) -> None:
    check = storage.check_disk(str(tmp_path / "not" / "yet"), statvfs=statvfs(free=free, total=total))
    assert check.status == status
    assert f"on {tmp_path}" in check.detail  # the nearest directory that exists: the store is made there


def test_store_on_a_read_only_filesystem_fails(tmp_path: Path) -> None:
    # No read-only mount is at hand without root, and chmod binds no root: statvfs says what a remount would.
    check = storage.check_store(str(tmp_path), statvfs=statvfs(free=2**30, total=2**32, flag=os.ST_RDONLY))
    assert check.status == FAIL and "read-only filesystem" in check.detail


def test_store_write_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    stored_session(tmp_path, "kitchen")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    check = storage.check_store(str(tmp_path))
    assert check == Check("store", OK, f"{tmp_path}: writable as uid {os.geteuid()}, 1 session(s), nothing quarantined")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def as_nobody(fn: Callable[[], Check]) -> Check:
    """`fn()` in a forked child that has dropped root for nobody (65534): root writes wherever it likes."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the child only runs `fn`
        pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            check = fn()
            os.write(write, json.dumps([check.name, check.status, check.detail]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    name, status, detail = json.loads(text)
    return Check(name, status, detail)


def test_store_that_cannot_be_written_fails(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # tmp_path's parents are root's own (0700): nobody needs a directory it can reach and not write.
        with tempfile.TemporaryDirectory(dir="/tmp") as store:
            os.chmod(store, 0o755)
            check = as_nobody(lambda: storage.check_store(store))
    else:
        tmp_path.chmod(0o500)
        try:
            check = storage.check_store(str(tmp_path))
        finally:
            tmp_path.chmod(0o700)
    assert check.status == FAIL and "cannot write (Permission denied)" in check.detail


def test_store_missing_is_skipped_and_a_file_fails(tmp_path: Path) -> None:
    assert storage.check_store(str(tmp_path / "none")).status == SKIP
    (tmp_path / "file").write_text("")
    assert storage.check_store(str(tmp_path / "file")).status == FAIL


# -- clock, directly --------------------------------------------------------------------------------

SYNCED = clock.KernelClock(status=0, maxerror_us=100_000)
UNSYNCED = clock.KernelClock(status=clock.STA_UNSYNC, maxerror_us=16_000_000)
NOW = clock.NOT_BEFORE.timestamp() + 86400 * 300


@pytest.mark.parametrize(
    ("now", "kernel", "flag", "status", "says"),
    [
        (NOW, SYNCED, False, OK, "kernel: synchronized, max error 0.1 s"),
        (NOW, UNSYNCED, True, OK, "systemd-timesyncd"),
        (NOW, UNSYNCED, False, FAIL, "not synchronized (kernel: STA_UNSYNC"),
        (NOW, clock.KernelClock(status=0, maxerror_us=16_000_000), False, FAIL, "max error 16 s"),
        (0.0, SYNCED, True, FAIL, "reads 1970-01-01 00:00:00Z, before this release (2026-01-01)"),
        (NOW, None, False, OK, "synchronization unknown"),
    ],
)
def test_clock(
    tmp_path: Path, now: float, kernel: clock.KernelClock | None, flag: bool, status: str, says: str
) -> None:
    flag_file = tmp_path / "synchronized"
    if flag:
        flag_file.touch()
    check = clock.check_clock(now=lambda: now, kernel=lambda: kernel, flag=flag_file)
    assert check.status == status and says in check.detail


def test_adjtimex_reads_this_kernel() -> None:
    state = clock.adjtimex()
    assert state is not None and state.maxerror_us >= 0


# -- credentials, directly --------------------------------------------------------------------------


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "OPENAI_", "GOOGLE_")) or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_credentials")
def test_credentials_for_each_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert credentials.check_credentials(Settings()).status == SKIP
    gemini = Settings(model=ModelSettings(provider="gemini_live"))
    assert credentials.check_credentials(gemini) == Check(
        "credentials",
        FAIL,
        "no GOOGLE_API_KEY for gemini_live (environment, systemd credential edgevoice_GOOGLE_API_KEY, or a file "
        "named by model.api_key_file)",
    )
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "edgevoice_GOOGLE_API_KEY").write_text(KEY + "\r\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))  # as systemd's LoadCredential=
    assert credentials.check_credentials(gemini) == Check("credentials", OK, "GOOGLE_API_KEY found")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-has a space inside")
    check = credentials.check_credentials(Settings(model=ModelSettings(provider="openai_realtime")))
    assert check == Check("credentials", FAIL, "OPENAI_API_KEY has whitespace or control characters inside the key")
    nova = Settings(model=ModelSettings(provider="nova_sonic"), sync=SyncSettings(bucket=BUCKET))
    check = credentials.check_credentials(nova)
    assert check.status == FAIL and check.detail.startswith("no AWS credentials for nova_sonic and sync")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEDGEVOICEDOCTOR1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    check = credentials.check_credentials(nova)
    assert check == Check("credentials", OK, "AWS credentials for nova_sonic and sync found (env)")


# -- network, directly ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Listener, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    listener = Listener(tls=(cert, key))
    yield listener, cert
    listener.close()


def test_endpoint_tls_handshake_is_verified(
    tls_listener: tuple[Listener, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, cert = tls_listener
    model = ModelSettings(provider="gemini_live", endpoint=f"https://127.0.0.1:{listener.port}")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    untrusted = network.check_endpoint(model)
    assert untrusted.status == FAIL and "TLS certificate not trusted (self-signed certificate)" in untrusted.detail
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a private CA is trusted (README, model.endpoint)
    trusted = network.check_endpoint(model)
    assert trusted.status == OK and "TLS handshake" in trusted.detail and "TLSv1." in trusted.detail


def test_endpoint_failures_say_which(model_port: int) -> None:
    assert network.check_endpoint(ModelSettings()) == Check("endpoint", SKIP, "the local model dials nothing")
    refused = network.check_endpoint(
        ModelSettings(provider="openai_realtime", endpoint=f"ws://127.0.0.1:{free_port()}")
    )
    assert refused.status == FAIL and refused.detail.endswith("connection refused")

    def no_dns(address: tuple[str, int], timeout: float) -> socket.socket:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def silent(address: tuple[str, int], timeout: float) -> socket.socket:
        raise TimeoutError

    nova = ModelSettings(provider="nova_sonic", region="eu-west-1")
    check = network.check_endpoint(nova, connect=no_dns)
    assert check.detail == (
        "bedrock-runtime.eu-west-1.amazonaws.com:443: name lookup failed (Name or service not known): "
        "no network or no DNS?"
    )
    assert "no answer within 3 s" in network.check_endpoint(nova, connect=silent).detail


# -- S3 and the backlog, directly -------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEDGEVOICEDOCTOR1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("aws_env")
def test_s3_head_and_its_403_fallback(s3: str) -> None:
    assert sync.check_s3(SyncSettings()).status == SKIP
    assert sync.check_s3(SyncSettings(bucket=BUCKET, endpoint_url=s3)).status == OK
    missing = sync.check_s3(SyncSettings(bucket="no-such-bucket", endpoint_url=s3))
    assert missing.status == FAIL and "no such bucket" in missing.detail
    with FaultProxy.to(s3) as proxy:
        proxy.http_error(403, "AccessDenied")  # every request refused, the listing too
        denied = sync.check_s3(SyncSettings(bucket=BUCKET, endpoint_url=proxy.endpoint, device_id="dev-a"))
    assert denied.status == FAIL
    assert denied.detail.endswith("HEAD refused (403); listing edgevoice/dev-a/: AccessDenied (HTTP 403)")

    class PrefixOnly:  # what the README's device policy gets from S3: no HEAD of the bucket, its own prefix listed
        def __init__(self) -> None:
            self.real = client(s3)

        def head_bucket(self, **kw: Any) -> Any:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadBucket")

        def list_objects_v2(self, **kw: Any) -> Any:
            assert kw["Prefix"] == "edgevoice/dev-a/"
            return self.real.list_objects_v2(**kw)

    check = sync.check_s3(
        SyncSettings(bucket=BUCKET, endpoint_url=s3, device_id="dev-a"), client_factory=lambda s: PrefixOnly()
    )
    assert check.status == OK and "listing edgevoice/dev-a/ works" in check.detail


def test_sync_backlog(tmp_path: Path) -> None:
    on = SyncSettings(bucket=BUCKET)
    session = SessionSettings(dir=str(tmp_path))
    up, down = {"s3": Check("s3", OK, "")}, {"s3": Check("s3", FAIL, "")}
    assert sync.check_sync_backlog(session, SyncSettings(), done=up).status == SKIP
    assert (
        sync.check_sync_backlog(SessionSettings(dir=str(tmp_path / "none")), on, done=up).detail == "nothing stored yet"
    )
    mark_synced(stored_session(tmp_path, "old"))
    assert sync.check_sync_backlog(session, on, done=up) == Check("sync_backlog", OK, "all 1 stored session(s) synced")
    stored_session(tmp_path, "recent", age_s=30)
    check = sync.check_sync_backlog(session, on, done=up)
    assert check == Check("sync_backlog", OK, "1 of 2 session(s) not yet synced, oldest change 0 min 30 s ago")
    stored_session(tmp_path, "stuck", age_s=3 * 3600)
    check = sync.check_sync_backlog(session, on, done=up)
    assert check.status == FAIL and "S3 answers, yet stuck waited over 11 min 0 s" in check.detail
    assert sync.check_sync_backlog(session, on, done=down).status == OK  # S3's own row fails; the backlog waits


# -- the runner -------------------------------------------------------------------------------------


def test_runner_bounds_each_check_and_keeps_the_order() -> None:
    released = threading.Event()

    def hang(done: Any) -> Check:
        released.wait(30)  # set when the test ends: the abandoned thread returns quietly, never into another test
        return Check("slow", OK, "too late")

    def broken(done: Any) -> Check:
        raise KeyError("bug")

    lanes = [
        [Step("a", 1, lambda done: Check("a", OK, "")), Step("b", 1, lambda done: Check("b", OK, str(sorted(done))))],
        [Step("slow", 0.2, hang)],
        [Step("bug", 1, broken)],
    ]
    started = time.monotonic()
    try:
        checks = list(run_steps(lanes, ["slow", "bug", "b", "a"]))
    finally:
        released.set()
    assert time.monotonic() - started < 2
    assert checks == [
        Check("slow", FAIL, "no answer within 0.2 s"),
        Check("bug", FAIL, "the check itself failed (KeyError: 'bug')"),
        Check("b", OK, "['a']"),
        Check("a", OK, ""),
    ]
