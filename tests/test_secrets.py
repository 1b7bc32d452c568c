"""Secrets: API keys are read clean or refused by name, and no log of the daemon ever holds one.

The log tests run the real `edgevoice -v run` for each cloud provider against a listener on 127.0.0.1
(tests/cloudfake.py), with known fake credentials, once as is and once with the provider's wire loggers
asked for by name (which print headers and signed requests), and search the whole log for the secrets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgevoice import apikeys, checks, config
from tests.alsa import AsoundRc, alsa_home
from tests.cloudfake import Listener, run_daemon, self_signed

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")

OPENAI_KEY = "sk-evtest-Q7f3kZ9pLm2Xw8Rt5Yb1Nc4Vd6Hs0JqA"
GOOGLE_KEY = "AIzaEvTest-x9Kq2Lw7Pm4Rt1Yz8Vb3Nc6Hd0Js5F"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAEVTEST7Q2W9X4Z1M",
    "AWS_SECRET_ACCESS_KEY": "evTestSecret/k3Jd8Lq2Wn5Rz7Xc1Vb4Nm6Ph9Ty0Gf2Sa8Dq",
    "AWS_SESSION_TOKEN": "IQoJevTestSessionToken//wEaCXVzLWVhc3QtMSJHMEUCIQC3u8e2o5i1a7s4d9f6g0h2j8k5l1m4n7",
}
CLOUD_ENV = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", *AWS, "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK")


def fragments(secret: str) -> list[str]:
    """The secret and the pieces of it a cut or a wrapped line would leave."""
    return [secret, secret[:12], secret[-12:], secret[len(secret) // 2 - 6 : len(secret) // 2 + 6]]


def assert_no_secret(log: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in fragments(secret):
            assert piece not in log, f"{piece!r} (from a secret) is in the log:\n{log[-4000:]}"


def clean_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in CLOUD_ENV}
    # No instance metadata lookups, no real ~/.aws (HOME is the test's own).
    return {**env, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGEVOICE, *args], capture_output=True, text=True, timeout=120, env=env)


# --- reading keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [f"{OPENAI_KEY}\r\n", f"  {OPENAI_KEY}\n", f"\t{OPENAI_KEY}\r"])
def test_surrounding_whitespace_is_stripped_from_env_and_file(
    raw: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", raw)
    assert apikeys.read_api_key(config.ModelSettings(), "OPENAI_API_KEY") == OPENAI_KEY
    key = tmp_path / "key"
    key.write_bytes(b"\xef\xbb\xbf" + raw.encode())  # with a BOM, as a Windows editor saves it
    key.chmod(0o600)
    assert apikeys.read_api_key(config.ModelSettings(api_key_file=str(key)), "NOPE_NOT_SET") == OPENAI_KEY


def test_a_systemd_credential_comes_before_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Under systemd the key is a file of `$CREDENTIALS_DIRECTORY` (`LoadCredential=edgevoice:DIR` names a
    file X of DIR `edgevoice_X`); the environment is the fallback, api_key_file the override."""
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = config.ModelSettings()
    assert apikeys.read_api_key(settings, "OPENAI_API_KEY") == "sk-from-the-environment"  # none passed
    (creds / "edgevoice_OPENAI_API_KEY").write_text(f"{OPENAI_KEY}\n")
    assert apikeys.read_api_key(settings, "OPENAI_API_KEY") == OPENAI_KEY
    key = tmp_path / "key"
    key.write_text("sk-from-the-file")
    key.chmod(0o600)
    assert apikeys.read_api_key(config.ModelSettings(api_key_file=str(key)), "OPENAI_API_KEY") == "sk-from-the-file"
    (creds / "edgevoice_OPENAI_API_KEY").write_text("sk-evtest bad key")
    with pytest.raises(config.ConfigError) as e:
        apikeys.read_api_key(settings, "OPENAI_API_KEY")
    assert "systemd credential edgevoice_OPENAI_API_KEY" in str(e.value) and "evtest" not in str(e.value)


BAD_KEYS = [
    ("sk-evtest-Q7f3kZ9p\r\nLm2Xw8Rt5Yb1Nc4Vd6Hs0JqA", "whitespace or control"),
    ("sk-evtest-Q7f3kZ9p Lm2Xw8Rt5Yb1Nc4Vd6Hs0JqA", "whitespace or control"),
    ("sk-evtest-Q7f3kZ9p\x07Lm2Xw8Rt5Yb1Nc4Vd6Hs0JqA", "whitespace or control"),
    ("sk-evtest-Q7f3kZ9pé-Lm2Xw8Rt5Yb1Nc4Vd6Hs0JqA", "non-ASCII"),
    (" \r\n", "empty"),
]


@pytest.mark.parametrize(("raw", "why"), BAD_KEYS)
def test_a_bad_env_key_is_refused_by_name(raw: str, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", raw)
    with pytest.raises(config.ConfigError) as e:
        checks.check(config.parse("[model]\nprovider = 'gemini_live'\n"), voice=False)
    msg = str(e.value)
    assert "GOOGLE_API_KEY" in msg and why in msg and "\n" not in msg
    assert "Q7f3" not in msg and "JqA" not in msg


@pytest.mark.parametrize(("raw", "why"), [(r.encode(), w) for r, w in BAD_KEYS] + [(b"\xffsk-\xfe", "not UTF-8")])
def test_a_bad_key_file_is_refused_by_name(raw: bytes, why: str, tmp_path: Path) -> None:
    key = tmp_path / "openai.key"
    key.write_bytes(raw)
    key.chmod(0o600)
    with pytest.raises(config.ConfigError) as e:
        checks.check(config.parse(f"[model]\nprovider = 'openai_realtime'\napi_key_file = '{key}'\n"), voice=False)
    msg = str(e.value)
    assert f"model.api_key_file '{key}'" in msg and why in msg and "\n" not in msg
    assert "Q7f3" not in msg


def test_config_check_looks_only_at_the_configured_providers_key(tmp_path: Path) -> None:
    openai = tmp_path / "openai.toml"
    openai.write_text("[model]\nprovider = 'openai_realtime'\n")
    local = tmp_path / "local.toml"
    local.write_text("[model]\nprovider = 'local'\n")
    bad = "sk-evtest-Q7f3kZ9p\r\nLm2Xw8Rt5Yb1Nc4Vd6Hs0JqA"

    r = run_cli("config", "check", str(openai), env=clean_env(dict(os.environ)))
    assert r.returncode == 0, r.stderr  # no key on a build machine is fine at `config check`
    r = run_cli("config", "check", str(local), env=clean_env(dict(os.environ), OPENAI_API_KEY=bad))
    assert r.returncode == 0, r.stderr  # not this config's provider
    r = run_cli("config", "check", str(openai), env=clean_env(dict(os.environ), OPENAI_API_KEY=f"{OPENAI_KEY}\r\n"))
    assert r.returncode == 0, r.stderr  # surrounding CR/LF is stripped, not an error
    r = run_cli("config", "check", str(openai), env=clean_env(dict(os.environ), OPENAI_API_KEY=bad))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "OPENAI_API_KEY" in lines[0] and "whitespace or control" in lines[0]
    assert_no_secret(r.stderr + r.stdout, OPENAI_KEY)


def test_run_refuses_a_bad_key_at_start_and_names_a_missing_one(tmp_path: Path) -> None:
    cfg = tmp_path / "e.toml"
    cfg.write_text(f"[model]\nprovider = 'openai_realtime'\n[session]\ndir = '{tmp_path / 's'}'\n")
    bad = "sk-evtest-Q7f3kZ9p\r\nLm2Xw8Rt5Yb1Nc4Vd6Hs0JqA"
    r = run_cli("run", "--config", str(cfg), env=clean_env(dict(os.environ), OPENAI_API_KEY=bad))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "OPENAI_API_KEY" in r.stderr and "whitespace or control" in r.stderr
    assert_no_secret(r.stderr + r.stdout, OPENAI_KEY)
    r = run_cli("run", "--config", str(cfg), env=clean_env(dict(os.environ)))
    assert r.returncode == 2 and "needs OPENAI_API_KEY" in r.stderr, r.stderr


# --- the whole log of a verbose daemon that connects ------------------------------------------------------

WIRE = {
    "openai_realtime": ["websockets"],
    "gemini_live": ["websockets", "google_genai", "httpx", "httpcore"],
    "nova_sonic": ["smithy_core", "smithy_http", "smithy_aws_core", "smithy_aws_event_stream", "aws_sdk_signers",
                   "aws_sdk_bedrock_runtime", "botocore", "awscrt"],
}
# What a wire logger asked for by name prints, to show it really was on.
WIRE_EVIDENCE = {
    "openai_realtime": "DEBUG websockets.client: > GET /v1/realtime",
    "gemini_live": "DEBUG websockets.client: > GET /ws/",
    "nova_sonic": "DEBUG smithy_core",
}


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


@pytest.mark.parametrize("by_name", [False, True], ids=["default", "wire-loggers-by-name"])
@pytest.mark.parametrize("provider", ["openai_realtime", "gemini_live", "nova_sonic"])
def test_verbose_log_never_holds_a_secret(provider: str, by_name: bool, alsa: AsoundRc, tmp_path: Path) -> None:
    silence = tmp_path / "mic.raw"
    silence.write_bytes(bytes(16000 * 2 * 60))  # a minute of silence, read in real time: no turn opens
    alsa.capture("mic", silence).playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "e.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{tmp_path / "s"}"\n'
        f'[model]\nprovider = "{provider}"\n'
    )
    env = clean_env(alsa.env(), OPENAI_API_KEY=OPENAI_KEY, GOOGLE_API_KEY=GOOGLE_KEY, **AWS)
    tls = None
    if provider == "gemini_live":
        tls = self_signed(tmp_path)
        env = {**env, "SSL_CERT_FILE": str(tls[0])}
    listener = Listener(tls)
    if provider == "gemini_live":
        env["GOOGLE_GEMINI_BASE_URL"] = f"https://127.0.0.1:{listener.port}"
    wire = [a for name in WIRE[provider] for a in ("--debug-logger", name)] if by_name else []
    args = ["-v", *wire, "run", "--config", str(cfg), "--input-pace", "1"]
    try:
        log = run_daemon(args, env, tmp_path / "daemon.log", listener=listener, launcher=provider != "gemini_live")
    finally:
        listener.close()

    # The credentials were really in play: sent to the listener (or signed with, for AWS).
    sent = b"".join(listener.seen)
    if provider == "openai_realtime":
        assert f"Bearer {OPENAI_KEY}".encode() in sent, sent[:500]
    if provider == "gemini_live":
        assert f"x-goog-api-key: {GOOGLE_KEY}".lower().encode() in sent.lower(), sent[:500]
    assert "DEBUG edgevoice" in log or "DEBUG strands" in log, log[-3000:]  # -v was on
    if by_name:
        assert WIRE_EVIDENCE[provider] in log, log[-3000:]
    else:
        assert "DEBUG websockets" not in log and "DEBUG smithy" not in log and "DEBUG botocore" not in log
    assert_no_secret(log, OPENAI_KEY, GOOGLE_KEY, *AWS.values())


def test_a_key_with_a_stray_newline_connects_and_stays_out_of_the_log(alsa: AsoundRc, tmp_path: Path) -> None:
    """The reported case: OPENAI_API_KEY written with CRLF. It is stripped, sent clean, never logged."""
    silence = tmp_path / "mic.raw"
    silence.write_bytes(bytes(16000 * 2 * 60))
    alsa.capture("mic", silence).playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "e.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{tmp_path / "s"}"\n'
        '[model]\nprovider = "openai_realtime"\n'
    )
    env = clean_env(alsa.env(), OPENAI_API_KEY=f"{OPENAI_KEY}\r\n")
    listener = Listener()
    try:
        log = run_daemon(
            ["run", "--config", str(cfg), "--input-pace", "1"], env, tmp_path / "d.log", listener=listener,
            launcher=True,
        )
    finally:
        listener.close()
    assert f"Bearer {OPENAI_KEY}\r\n".encode() in b"".join(listener.seen)  # one clean header line
    assert "model stopped" in log
    assert_no_secret(log, OPENAI_KEY)
