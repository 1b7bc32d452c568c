"""A small tmpfs standing in for the flash: full at 256 KiB, and remountable read-only.

Mounting needs root (and CAP_SYS_ADMIN); where it is not allowed the tests that use it are skipped
with the reason, never failed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def sh(cmd: list[str]) -> str:
    """"" when the command worked, else its error."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    return "" if r.returncode == 0 else (r.stderr.strip() or f"exit {r.returncode}")


def small_tmpfs(tmp_path: Path, size: str = "256k") -> Iterator[Path]:
    """Body of a fixture: a tmpfs of `size` mounted under tmp_path, unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "flash"
    mnt.mkdir()
    if err := sh(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)]):
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    yield mnt
    sh(["umount", "-l", str(mnt)])


def read_only(mnt: Path, ro: bool) -> None:
    """Remount the tmpfs read-only (as Raspberry Pi OS does with a failing SD card) or back."""
    assert not (err := sh(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(mnt)])), err
