"""Per-test ALSA without a sound card: `file` PCMs in a per-test `$HOME/.asoundrc`.

What alsa-lib 1.2.8 does (read in its source, src/conf.c and src/pcm/pcm_file.c, and checked here):
- The configuration is loaded on the first `snd_pcm_open` and cached for the process.
  `snd_config_update()` (run by every open) re-reads it only when a file named by
  ALSA_CONFIG_PATH (default `/usr/share/alsa/alsa.conf`) changes mtime, size or inode.
  `~/.asoundrc` is pulled in by a hook inside alsa.conf and is NOT watched: writing it, touching
  it, or changing HOME has no effect once the process has opened any PCM.
- `snd_config_update_free_global()` drops the cache; the next open re-reads everything with
  HOME as it is then (`~` is expanded with getenv("HOME") at load time). PCMs that are already
  open keep working. So `AsoundRc.write()` calls it: tests in one pytest process each get their
  own HOME by `monkeypatch.setenv("HOME", ...)` and a reload, in any order. A subprocess needs
  only HOME in its environment (`AsoundRc.env()`).
- A capture `file` PCM opens `infile` in `snd_pcm_open`: a missing infile makes the open fail
  (ENOENT), which is how tests make a real capture device "absent". Reads after the end of the
  infile return stale buffer data, not silence; nothing paces reads.
- The output `file` is opened at hw_params (so an output file in a missing directory makes a
  playback open fail) and may be a pipe, `"|command"` (popen). Capture PCMs write what they read
  to `file` too; when that pipe's reader dies, the write fails with EPIPE and `snd_pcm_readi` /
  `snd_pcm_writei` return -EIO, so pyalsaaudio raises ALSAAudioError mid-stream: a real device
  failure. `killable_sink()` makes such a pipe and lets the test kill it.
- The file plugin keeps one ALSA buffer (periods x period, 4 x period by pyalsaaudio's default)
  before writing to the file; `drop()`, `drain()` and `close()` write the rest out. `null`
  consumes instantly (avail() stays at buffer_size), so file-over-null playback is not paced.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_libasound = ctypes.CDLL("libasound.so.2")  # the same library pyalsaaudio is linked against


def reload_config() -> None:
    """Make alsa-lib re-read its configuration (and ~/.asoundrc with the current HOME) at the next open."""
    _libasound.snd_config_update_free_global()


class AsoundRc:
    """Builds `home/.asoundrc` from PCM definitions; `write()` puts it in place and reloads alsa-lib."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / ".asoundrc"
        self._parts: list[str] = []

    def capture(self, name: str, infile: Path | str, *, sink: str = "/dev/null") -> AsoundRc:
        """A capture PCM that returns `infile` (raw S16_LE mono at the rate it is opened with)."""
        self._parts.append(
            f'pcm.{name} {{\n  type file\n  slave.pcm "null"\n  file "{sink}"\n'
            f'  infile "{infile}"\n  format "raw"\n}}\n'
        )
        return self

    def playback(self, name: str, outfile: Path | str, *, fmt: str = "raw") -> AsoundRc:
        """A playback PCM that writes what is played to `outfile` (`raw` or `wav`, or a `|pipe`)."""
        self._parts.append(
            f'pcm.{name} {{\n  type file\n  slave.pcm "null"\n  file "{outfile}"\n  format "{fmt}"\n}}\n'
        )
        return self

    def raw(self, text: str) -> AsoundRc:
        self._parts.append(text if text.endswith("\n") else text + "\n")
        return self

    def write(self) -> Path:
        self.path.write_text("".join(self._parts), encoding="utf-8")
        reload_config()
        return self.path

    def env(self) -> dict[str, str]:
        """The environment for a subprocess that should see these PCMs."""
        return {**os.environ, "HOME": str(self.home)}


def alsa_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    """Body of a fixture: `yield from alsa_home(tmp_path, monkeypatch)`."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    reload_config()
    yield AsoundRc(home)
    reload_config()  # later opens must not see this test's PCMs (monkeypatch restores HOME after)


class Sink:
    """A `|pipe` output for a file PCM whose reader process the test can kill."""

    def __init__(self, directory: Path, out: str = "/dev/null") -> None:
        self.pidfile = directory / "sink.pid"
        script = directory / "sink.sh"
        # `exec` twice: the process that holds the pipe's read end is the one whose pid is written.
        script.write_text(f'#!/bin/sh\necho $$ > "{self.pidfile}"\nexec cat > {out}\n', encoding="utf-8")
        script.chmod(0o755)
        self.pipe = f"|exec {script}"

    def pid(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.pidfile.read_text() if self.pidfile.exists() else ""
            if text.strip():
                return int(text)
            time.sleep(0.01)
        raise TimeoutError("the sink process never started")

    def kill(self) -> None:
        pid = self.pid()
        self.pidfile.unlink()
        os.kill(pid, signal.SIGKILL)


def killable_sink(directory: Path, out: str = "/dev/null") -> Sink:
    return Sink(directory, out)
