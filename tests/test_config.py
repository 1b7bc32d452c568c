"""Config: defaults, every kind of bad value -> exit 2 and one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice import apikeys, config

EDGEVOICE = [sys.executable, "-m", "edgevoice.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "edgevoice"), *args], capture_output=True, text=True, timeout=60
    )


def test_defaults_need_no_file(tmp_path: Path) -> None:
    s = config.parse("")
    assert s == config.Settings()
    assert s.gate.preroll_ms == 400 and s.gate.hangover_ms == 700
    assert s.session.dir == "/var/lib/edgevoice/sessions"
    assert s.model.provider == "local"


def test_values_are_read(tmp_path: Path) -> None:
    p = tmp_path / "e.toml"
    p.write_text('[audio]\ncapture_device = "plughw:CARD=Mic,DEV=0"\nperiod_ms = 20\n[gate]\nthreshold = 0.6\n')
    s = config.load(p)
    assert s.audio.capture_device == "plughw:CARD=Mic,DEV=0"
    assert s.audio.period_ms == 20
    assert s.gate.threshold == 0.6


BAD = [
    ("[gate]\nhangover_ms = 'long'\n", "gate.hangover_ms", "integer"),
    ("[gate]\nhangover_ms = 5\n", "gate.hangover_ms", "between"),
    ("[gate]\nmode = 'always'\n", "gate.mode", "one of"),
    ("[gate]\nthreshold = true\n", "gate.threshold", "number"),
    ("[audio]\nperiod_ms = 25\n", "audio.period_ms", "one of 10, 20, 30"),
    ("[audio]\nhalf_duplex = 'yes'\n", "audio.half_duplex", "true or false"),
    ("[audio]\ncapture_device = 3\n", "audio.capture_device", "string"),
    ("[audio]\nbogus = 1\n", "audio.bogus", "unknown key"),
    ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
    ("gate = 3\n", "gate", "table"),
    ("[model]\nprovider = 'siri'\n", "model.provider", "one of"),
    ("[gate]\nstart_frames = 9\nwindow_frames = 4\n", "gate.start_frames", "window_frames"),
    ("[gate\n", "not valid TOML", ""),
    ("[model]\napi_key_file = '/nonexistent/key'\n", "model.api_key_file", "cannot be read"),
    ("[model]\nresponse_timeout_s = 0.5\n", "model.response_timeout_s", "at least 1"),
    ("[model]\nresponse_timeout_s = nan\n", "model.response_timeout_s", "at least 1"),
    ("[model]\nresponse_timeout_s = '15'\n", "model.response_timeout_s", "number"),
    ("[model]\nfallback = 'off'\n", "model.fallback", "one of 'local', 'none'"),
    ("[model]\nidle_disconnect_s = -1\n", "model.idle_disconnect_s", "at least 0"),
    ("[model]\nbackoff_initial_s = 0\n", "model.backoff_initial_s", "between 0.1 and 600"),
    ("[model]\nbackoff_max_s = 0.5\n", "model.backoff_max_s", "between 1 and 3600"),
    ("[model]\nbackoff_initial_s = 60\nbackoff_max_s = 30\n", "model.backoff_max_s", "at least model.backoff_ini"),
]


def test_connection_keys_defaults_and_values() -> None:
    m = config.parse("").model
    assert (m.fallback, m.idle_disconnect_s, m.backoff_initial_s, m.backoff_max_s) == ("local", 300.0, 1.0, 30.0)
    text = "[model]\nfallback = 'none'\nidle_disconnect_s = 0\nbackoff_initial_s = 2\nbackoff_max_s = 120\n"
    m = config.parse(text).model
    assert (m.fallback, m.idle_disconnect_s, m.backoff_initial_s, m.backoff_max_s) == ("none", 0.0, 2.0, 120.0)


def test_response_timeout_from_one_second_up() -> None:
    assert config.parse("").model.response_timeout_s == 15.0
    assert config.parse("[model]\nresponse_timeout_s = 1\n").model.response_timeout_s == 1.0
    assert config.parse("[model]\nresponse_timeout_s = 3600.5\n").model.response_timeout_s == 3600.5


@pytest.mark.parametrize(("text", "key", "why"), BAD)
def test_bad_value_names_the_key(text: str, key: str, why: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.parse(text)
    msg = str(e.value)
    assert key in msg and why in msg
    assert "\n" not in msg


def test_secret_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    os.chmod(key, 0o644)
    with pytest.raises(config.ConfigError, match=r"model\.api_key_file .* 0600"):
        config.parse(f"[model]\napi_key_file = '{key}'\n")
    os.chmod(key, 0o600)
    s = config.parse(f"[model]\napi_key_file = '{key}'\n")
    assert apikeys.read_api_key(s.model, "NOPE_NOT_SET") == "sk-test"


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEVOICE_TEST_KEY", "abc")
    assert apikeys.read_api_key(config.ModelSettings(), "EDGEVOICE_TEST_KEY") == "abc"


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[gate]\nmode = 'push_to_talk'\n")
    r = run_cli("config", "check", str(good))
    assert r.returncode == 0, r.stderr
    for i, (text, key, _why) in enumerate(BAD):
        bad = tmp_path / f"bad{i}.toml"
        bad.write_text(text)
        r = run_cli("config", "check", str(bad))
        assert r.returncode == 2, (text, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0], (text, r.stderr)
    r = run_cli("config", "check", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml" in r.stderr


def test_every_field_documented_and_in_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for key, _t, _d, doc in config.field_docs():
        assert doc, f"{key} has no docstring"
        assert f"`{key}`" in readme, f"{key} is not in the README's config reference"


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 129, "a..b"])
def test_session_ids_are_checked(bad: str) -> None:
    with pytest.raises(config.ConfigError, match=r"session\.session_id"):
        config.parse(f"[session]\nsession_id = {bad!r}\n")


CHECK_BAD = [
    ("[audio]\ncapture_device = ''\n", "audio.capture_device", "empty"),
    ("[audio]\nplayback_device = '   '\n", "audio.playback_device", "empty"),
    ("[local]\nvoice = 'en-zz'\n", "local.voice", "espeak-ng"),
    ("[local]\nvoice = 'en-us+nosuchvariant'\n", "local.voice", "variant"),
    ("[local]\nvoice = ''\n", "local.voice", "espeak-ng"),
]


@pytest.mark.parametrize(("text", "key", "why"), CHECK_BAD)
def test_cli_check_without_hardware(tmp_path: Path, text: str, key: str, why: str) -> None:
    """`config check` checks what it can with no sound card: device names, the espeak-ng voice."""
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2, (text, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and why in lines[0], r.stderr


@pytest.mark.parametrize("voice", ["en-us", "en-gb+f3", "en", "EN-US", "gmw/en-US", "en-us+Alex", "de"])
def test_cli_check_accepts_espeak_voices_and_variants(tmp_path: Path, voice: str) -> None:
    good = tmp_path / "good.toml"
    good.write_text(f"[local]\nvoice = {voice!r}\n")
    r = run_cli("config", "check", str(good))
    assert r.returncode == 0, r.stderr


def test_run_rejects_an_empty_device_name(tmp_path: Path) -> None:
    cfg = tmp_path / "e.toml"
    cfg.write_text("[audio]\nplayback_device = ''\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "audio.playback_device" in lines[0], r.stderr
