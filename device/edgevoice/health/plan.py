"""Which checks doctor runs for a config, in which lanes, with which timeouts, and the order of the rows.

Timeouts are each check's own worst case plus a margin, so a row that times out means "hung", not "slow":
the ALSA opens are non-blocking and take milliseconds; the mic reads `mic_seconds` of real time; the network
checks have their own 3-5 s timeouts inside (botocore's three attempts against a refusing S3 take about 3 s);
the credential chain may ask an instance metadata service (1 s) or run a `credential_process`.
"""

from __future__ import annotations

from ..settings import Settings
from . import audio, clock, credentials, network, storage, sync
from .runner import Step

ORDER = (
    audio.CAPTURE,
    audio.PLAYBACK,
    audio.MIC_LEVEL,
    storage.DISK,
    storage.STORE,
    clock.CLOCK,
    credentials.CREDENTIALS,
    network.ENDPOINT,
    sync.S3,
    sync.SYNC_BACKLOG,
)
"""The rows, in the order doctor prints them (and the names `--json` gives them)."""

AUDIO_OPEN_TIMEOUT_S = 3.0
STORAGE_TIMEOUT_S = 5.0
"""The store check lists every session (a walk of the store), like `edgevoice sessions list`."""
CLOCK_TIMEOUT_S = 2.0
CREDENTIALS_TIMEOUT_S = 5.0
ENDPOINT_TIMEOUT_S = network.CONNECT_TIMEOUT_S + 2.0
"""The name lookup before the connect has no timeout of its own."""
S3_TIMEOUT_S = 6.0


def plan(settings: Settings, *, mic_seconds: float = audio.MIC_SECONDS) -> list[list[Step]]:
    """The lanes of checks for `settings` (see `runner.run`)."""
    a, s = settings.audio, settings.session

    return [
        # One device open at a time: a hw: device opens once, and the level check needs the capture's answer.
        [
            Step(audio.CAPTURE, AUDIO_OPEN_TIMEOUT_S, lambda done: audio.check_capture(a)),
            Step(
                audio.MIC_LEVEL,
                mic_seconds + audio.STALL_S + AUDIO_OPEN_TIMEOUT_S,
                lambda done: audio.check_mic_level(a, seconds=mic_seconds, done=done),
            ),
            Step(audio.PLAYBACK, AUDIO_OPEN_TIMEOUT_S, lambda done: audio.check_playback(a)),
        ],
        [
            Step(storage.DISK, STORAGE_TIMEOUT_S, lambda done: storage.check_disk(s.dir)),
            Step(storage.STORE, STORAGE_TIMEOUT_S, lambda done: storage.check_store(s.dir)),
        ],
        [Step(clock.CLOCK, CLOCK_TIMEOUT_S, lambda done: clock.check_clock())],
        [Step(network.ENDPOINT, ENDPOINT_TIMEOUT_S, lambda done: network.check_endpoint(settings.model))],
        # boto3 and botocore import lazily, and two threads importing them at once see half-imported
        # modules (ImportError, or a deadlock caught by the import lock): everything AWS runs in one lane.
        [
            Step(credentials.CREDENTIALS, CREDENTIALS_TIMEOUT_S, lambda done: credentials.check_credentials(settings)),
            Step(sync.S3, S3_TIMEOUT_S, lambda done: sync.check_s3(settings.sync)),
            Step(
                sync.SYNC_BACKLOG,
                STORAGE_TIMEOUT_S,
                lambda done: sync.check_sync_backlog(s, settings.sync, done=done),
            ),
        ],
    ]
