"""scripts/install in a real Debian trixie root (mmdebstrap, then chroot): a fresh install, the refusals (a
bad flag, not root), the boot-partition import, and an upgrade in place that keeps the settings and the
sessions byte for byte.

The root (minbase plus the installer's own packages but one, so its apt-get path runs too) is built once per
package list and kept as a tarball in ~/.cache/edgevoice-test/ (EDGEVOICE_TEST_CACHE overrides), with pip's
cache beside it: the first run builds it (about a minute), later runs extract it. Every command in the root
runs in a private mount namespace (`unshare --mount`) that holds its /proc, /sys and /dev mounts, so they go
away with the command whatever happens; the root is deleted afterwards, and only once nothing is mounted in
it. Skipped only when this is not root, when mmdebstrap or unshare cannot run, or when Debian's mirror or
PyPI cannot be reached.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)  # the first run builds the root; later runs take about a minute

REPO = Path(__file__).resolve().parent.parent
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PYPI = "https://pypi.org/simple/pip/"
CACHE = Path(os.environ.get("EDGEVOICE_TEST_CACHE") or Path.home() / ".cache" / "edgevoice-test")
LEFT_OUT = "alsa-utils"  # not baked into the cached root: the installer apt-gets it itself
SRC = "/usr/local/src/edgevoice"  # where the checkout goes inside the root
PIP_CACHE_IN_ROOT = "/var/cache/edgevoice-test-pip"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's bundle: an egress proxy's CA may be in it
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
UNITS = ("edgevoice.service", "edgevoice-sync.service", "edgevoice-firstboot.service")
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PIP_CACHE_DIR": PIP_CACHE_IN_ROOT,
} | ({"PIP_CERT": "/root/host-ca.crt"} if HOST_CA.is_file() else {})


def _reachable(url: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(HOST_CA) if HOST_CA.is_file() else None)
    try:
        with urllib.request.urlopen(url, timeout=15, context=ctx) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _require_environment() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mmdebstrap, chroot and mounts)")
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap)")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --mount cannot run here: {probe.stderr.decode().strip()}")
    if not _reachable(f"{MIRROR}/dists/{SUITE}/InRelease"):
        pytest.skip(f"Debian's mirror {MIRROR} cannot be reached")
    if not _reachable(PYPI):
        pytest.skip("PyPI cannot be reached")


def _packages() -> list[str]:
    """The installer's own apt list (`--list-packages`), run as nobody (fed on stdin, from /, so the checkout
    need not be readable by nobody) so that a broken flag cannot install anything on this machine; the
    optional ones (not in Debian) are left to it."""
    with open(REPO / "scripts/install", "rb") as script:
        out = subprocess.run(
            [*NOBODY, "bash", "-s", "--", "--list-packages"],
            stdin=script,
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    required = [line.split()[0] for line in out.splitlines() if len(line.split()) == 1]
    assert LEFT_OUT in required, f"scripts/install --list-packages no longer lists {LEFT_OUT}: {required}"
    return required


def _rootfs_tarball() -> Path:
    """A minbase trixie root with the installer's packages (less LEFT_OUT), built once per package list."""
    include = sorted(p for p in _packages() if p != LEFT_OUT)
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(include)} v1".encode()).hexdigest()[:16]
    tarball = CACHE / f"{SUITE}-{key}.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".tar.partial")
    built = subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--format=tar",
            f"--include={','.join(include)}",
            SUITE,
            str(partial),
            MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert built.returncode == 0, f"mmdebstrap failed:\n{built.stderr[-4000:]}"
    partial.rename(tarball)
    for old in CACHE.glob(f"{SUITE}-*.tar"):  # roots of older package lists
        if old != tarball:
            old.unlink()
    return tarball


def _checkout_files() -> list[str]:
    """The checkout as git sees it (tracked and new files, not ignored ones such as .venv), as on disk now."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [f for f in listed.split("\0") if f and (REPO / f).is_file()]


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _remove_root(root: Path) -> None:
    """Deletes the root, but never through a mount: rmtree across a bind of /dev would empty the host's."""
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "--recursive", "--lazy", point], capture_output=True)
    left = _mounts_under(root)
    if left:
        raise RuntimeError(f"not deleting {root}: still mounted there: {left}")
    shutil.rmtree(root)


def run_in(root: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`argv` chrooted into `root` with a clean environment, /proc, /sys and /dev mounted in a private mount
    namespace (gone when the command ends) and pip's cache bound in."""
    script = (
        "set -e; r=$1; cache=$2; shift 2; "
        'mount -t proc proc "$r/proc"; mount -t sysfs sysfs "$r/sys"; mount --rbind /dev "$r/dev"; '
        'mkdir -p "$r' + PIP_CACHE_IN_ROOT + '"; mount --bind "$cache" "$r' + PIP_CACHE_IN_ROOT + '"; '
        'exec chroot "$r" "$@"'
    )
    environment = [f"{k}={v}" for k, v in ENV.items()]
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root), str(CACHE / "pip")]
    return subprocess.run([*cmd, "env", "-i", *environment, *argv], capture_output=True, text=True, timeout=timeout)


@dataclass
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]
    seconds: float

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run_in(self.root, *argv, timeout=timeout)

    def uid(self, user: str) -> int:
        for line in self.path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2])
        raise AssertionError(f"no user {user} in the root's /etc/passwd")


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    _require_environment()
    for unit in ("edgevoice.service", "edgevoice-sync.service"):
        assert (REPO / "systemd" / unit).is_file(), f"systemd/{unit} is not in the checkout"
    tarball = _rootfs_tarball()
    (CACHE / "pip").mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="edgevoice-root-"))
    try:
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)], check=True, timeout=300)
        src = root / SRC.lstrip("/")
        src.mkdir(parents=True)
        files = "\0".join(_checkout_files()).encode()
        packed = subprocess.run(
            ["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"],
            input=files,
            capture_output=True,
            check=True,
            timeout=120,
        )
        subprocess.run(["tar", "-C", str(src), "-xf", "-"], input=packed.stdout, check=True, timeout=120)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        if HOST_CA.is_file():
            shutil.copyfile(HOST_CA, root / "root/host-ca.crt")
        start = time.monotonic()
        first = run_in(root, f"{SRC}/scripts/install")
        seconds = time.monotonic() - start
        assert first.returncode == 0, f"scripts/install failed (exit {first.returncode}):\n{first.stderr[-6000:]}"
        yield Installed(root, first, seconds)
    finally:
        _remove_root(root)


def test_fresh_install_runs_the_appliance(installed: Installed) -> None:
    assert "install: apt: installing" in installed.first.stderr and LEFT_OUT in installed.first.stderr
    assert "install: done: edgevoice " in installed.first.stderr
    helped = installed.run("/opt/edgevoice/venv/bin/edgevoice", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "usage: edgevoice" in helped.stdout
    checked = installed.run("/opt/edgevoice/venv/bin/edgevoice", "config", "check", "/etc/edgevoice/edgevoice.toml")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "/etc/edgevoice/edgevoice.toml: ok"
    # The shipped settings are the ones installed, and Debian's packages are visible in the venv.
    shipped = (REPO / "scripts/etc/edgevoice.toml").read_bytes()
    assert installed.path("/etc/edgevoice/edgevoice.toml").read_bytes() == shipped
    cfg = installed.path("/opt/edgevoice/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    print(f"first install: {installed.seconds:.0f} s")


def test_user_groups_and_permissions(installed: Installed) -> None:
    entry = installed.run("getent", "passwd", "edgevoice").stdout.strip().split(":")
    assert entry[5] == "/var/lib/edgevoice" and entry[6] == "/usr/sbin/nologin", entry
    assert int(entry[2]) < 1000, f"edgevoice is not a system account: {entry}"
    groups = installed.run("id", "-nG", "edgevoice").stdout.split()
    assert {"audio", "gpio"} <= set(groups), groups
    uid = installed.uid("edgevoice")

    def mode_owner(inside: str) -> tuple[int, int]:
        st = installed.path(inside).lstat()
        return stat.S_IMODE(st.st_mode), st.st_uid

    assert mode_owner("/etc/edgevoice/credentials") == (0o700, 0)
    assert installed.path("/etc/edgevoice/credentials").is_dir()
    assert mode_owner("/etc/edgevoice/edgevoice.toml") == (0o644, 0)
    assert mode_owner("/var/lib/edgevoice") == (0o700, uid)
    assert mode_owner("/var/lib/edgevoice/sessions") == (0o700, uid)
    journald = installed.path("/etc/systemd/journald.conf.d/60-edgevoice.conf").read_text()
    assert "Storage=volatile" in journald and "RuntimeMaxUse=" in journald
    assert "gpio" in installed.path("/etc/udev/rules.d/60-edgevoice-gpio.rules").read_text()


def test_units_installed_enabled_and_verified(installed: Installed) -> None:
    for unit in ("edgevoice.service", "edgevoice-sync.service"):
        assert installed.path(f"/etc/systemd/system/{unit}").read_bytes() == (REPO / "systemd" / unit).read_bytes()
    wants = {p.name: os.readlink(p) for p in installed.path("/etc/systemd/system").glob("*.wants/*")}
    for unit in UNITS:
        assert wants.get(unit) == f"/etc/systemd/system/{unit}", f"{unit} is not enabled: {wants}"
    enabled = installed.run("systemctl", "is-enabled", *UNITS)
    assert enabled.stdout.split() == ["enabled"] * len(UNITS), enabled.stdout + enabled.stderr
    # The daemon the unit starts is the venv's.
    execs = [
        line.split("=", 1)[1].split()[0]
        for line in installed.path("/etc/systemd/system/edgevoice.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    ]
    assert execs == ["/opt/edgevoice/venv/bin/edgevoice"], execs
    assert os.access(installed.path(execs[0]), os.X_OK)
    # trixie's own systemd-analyze (257), on the units as installed in the root.
    verified = installed.run("systemd-analyze", "verify", *(f"/etc/systemd/system/{u}" for u in UNITS))
    ours = [line for line in (verified.stdout + verified.stderr).splitlines() if "edgevoice" in line]
    assert verified.returncode == 0 and not ours, verified.stdout + verified.stderr


def test_refusals_are_one_line_and_exit_2(installed: Installed) -> None:
    script = f"{SRC}/scripts/install"
    for argv in (
        [script, "--bogus"],
        [script, "--source"],
        [script, "--source", "/nonexistent"],
        [*NOBODY, script],
    ):
        result = installed.run(*argv, timeout=60)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, (argv, result.stderr)
        assert result.stderr.startswith("install: "), (argv, result.stderr)
    nonroot = installed.run(*NOBODY, script, timeout=60)
    assert "root" in nonroot.stderr
    helped = installed.run(*NOBODY, script, "--help")
    assert helped.returncode == 0 and "--source DIR" in helped.stdout


def test_boot_partition_import_keeps_secrets_out_of_logs(installed: Installed) -> None:
    boot = installed.path("/boot/firmware")
    config = installed.path("/etc/edgevoice/edgevoice.toml")
    before = config.read_bytes()
    fake_nm = installed.path("/usr/sbin/NetworkManager")  # only their presence tells NetworkManager from iwd
    fake_iwd = installed.path("/usr/libexec/iwd")
    key, psk = "sk-test-FIRSTBOOTKEY-0123456789", "correct horse battery staple"
    try:
        (boot / "edgevoice-credentials").mkdir(parents=True)
        (boot / "edgevoice-credentials/OPENAI_API_KEY").write_text(key + "\n")
        (boot / "edgevoice.toml").write_text('[model]\nprovider = "local"\n')
        (boot / "edgevoice-wifi.toml").write_text(f'ssid = "Home Net"\npsk = "{psk}"\ncountry = "gb"\n')
        fake_nm.touch(mode=0o755)
        done = installed.run("/opt/edgevoice/libexec/edgevoice-firstboot", timeout=120)
        assert done.returncode == 0, done.stderr
        log = done.stdout + done.stderr
        assert key not in log and psk not in log, log
        assert config.read_text() == '[model]\nprovider = "local"\n'
        assert (boot / "edgevoice.toml.imported").is_file() and not (boot / "edgevoice.toml").exists()
        credential = installed.path("/etc/edgevoice/credentials/OPENAI_API_KEY")
        assert credential.read_text() == key + "\n"
        assert stat.S_IMODE(credential.stat().st_mode) == 0o600 and credential.stat().st_uid == 0
        assert not (boot / "edgevoice-credentials").exists()
        profile = installed.path("/etc/NetworkManager/system-connections/edgevoice-wifi.nmconnection")
        assert stat.S_IMODE(profile.stat().st_mode) == 0o600
        text = profile.read_text()
        assert "ssid=Home Net" in text and f"psk={psk}" in text and "key-mgmt=wpa-psk" in text
        assert not (boot / "edgevoice-wifi.toml").exists()
        assert installed.path("/etc/modprobe.d/cfg80211_regdomain.conf").read_text().strip().endswith("=GB")

        # Where iwd is the supplicant (rpi-image-gen's minimal image): its profile, named per iwd.network(5).
        fake_nm.unlink()
        fake_iwd.parent.mkdir(parents=True, exist_ok=True)
        fake_iwd.touch(mode=0o755)
        (boot / "edgevoice-wifi.toml").write_text(f'ssid = "Café"\npsk = "{psk}"\nhidden = true\n')
        done = installed.run("/opt/edgevoice/libexec/edgevoice-firstboot", timeout=120)
        assert done.returncode == 0, done.stderr
        assert psk not in done.stdout + done.stderr
        iwd = installed.path(f"/var/lib/iwd/={'Café'.encode().hex()}.psk")
        assert iwd.read_text() == f"[Security]\nPassphrase={psk}\n\n[Settings]\nHidden=true\n"
        assert stat.S_IMODE(iwd.stat().st_mode) == 0o600

        # Bad files are set aside with the reason beside them, the unit fails, and nothing leaks.
        (boot / "edgevoice-wifi.toml").write_text(f'ssid = "Home Net"\npsk = "{psk[:5]}"\n')
        (boot / "edgevoice.toml").write_text("[model]\nprovider = 'nope'\n")
        rejected = installed.run("/opt/edgevoice/libexec/edgevoice-firstboot", timeout=120)
        assert rejected.returncode == 1, rejected.stderr
        assert psk[:5] not in rejected.stdout + rejected.stderr
        assert psk[:5] not in (boot / "edgevoice-wifi.toml.error").read_text()
        assert "psk" in (boot / "edgevoice-wifi.toml.error").read_text()
        assert "model.provider" in (boot / "edgevoice.toml.error").read_text()
        assert (boot / "edgevoice.toml.invalid").is_file() and (boot / "edgevoice-wifi.toml.invalid").is_file()
        assert config.read_text() == '[model]\nprovider = "local"\n'  # the good one stays
    finally:
        fake_nm.unlink(missing_ok=True)
        fake_iwd.unlink(missing_ok=True)
        shutil.rmtree(installed.path("/var/lib/iwd"), ignore_errors=True)
        shutil.rmtree(boot, ignore_errors=True)
        installed.path("/etc/edgevoice/credentials/OPENAI_API_KEY").unlink(missing_ok=True)
        config.write_bytes(before)


def test_rerun_upgrades_in_place_and_keeps_settings_and_sessions(installed: Installed) -> None:
    config = installed.path("/etc/edgevoice/edgevoice.toml")
    config.write_bytes(config.read_bytes() + b"\n# changed by the operator\n")
    uid = installed.uid("edgevoice")
    session = installed.path("/var/lib/edgevoice/sessions/session_kept/session.json")
    session.parent.mkdir()
    session.write_bytes(b'{"session_id": "kept", "session_type": "AGENT"}\n')
    for p in (session.parent, session):
        os.chown(p, uid, uid)
    session.chmod(0o600)
    kept = {p: (p.read_bytes(), p.stat().st_mode, p.stat().st_uid) for p in (config, session)}
    python = installed.path("/opt/edgevoice/venv/bin/python").resolve().stat().st_ino
    # A newer checkout: the upgrade must carry this line into the venv.
    marker = "UPGRADE_MARKER = 'from the test'\n"
    init = installed.path(f"{SRC}/device/edgevoice/__init__.py")
    init.write_text(init.read_text() + marker)

    start = time.monotonic()
    again = installed.run(f"{SRC}/scripts/install")
    seconds = time.monotonic() - start
    assert again.returncode == 0, again.stderr[-6000:]
    assert "install: apt:" not in again.stderr  # everything is there now
    assert "creating" not in again.stderr  # neither the user nor the venv is made again
    for p, (data, mode, owner) in kept.items():
        assert (p.read_bytes(), p.stat().st_mode, p.stat().st_uid) == (data, mode, owner), p
    assert installed.path("/opt/edgevoice/venv/bin/python").resolve().stat().st_ino == python
    installed_init = installed.path("/opt/edgevoice/venv/lib").glob("python3*/site-packages/edgevoice/__init__.py")
    assert any(marker in p.read_text() for p in installed_init)
    checked = installed.run("/opt/edgevoice/venv/bin/edgevoice", "config", "check", "/etc/edgevoice/edgevoice.toml")
    assert checked.returncode == 0, checked.stderr
    enabled = installed.run("systemctl", "is-enabled", *UNITS)
    assert enabled.stdout.split() == ["enabled"] * len(UNITS)
    print(f"upgrade in place: {seconds:.0f} s")


def test_image_layer_preinstalls_what_the_installer_would() -> None:
    """rpi-image-gen's layer lists the installer's apt packages (optional ones too: Raspberry Pi's archive is
    in that image) and runs the installer itself, so an image and `scripts/install` on a Pi agree."""
    with open(REPO / "scripts/install", "rb") as script:
        out = subprocess.run(
            [*NOBODY, "bash", "-s", "--", "--list-packages"], stdin=script, cwd="/", capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    wanted = [line.split()[0] for line in out.stdout.splitlines()]
    layer = (REPO / "image/layer/edgevoice.yaml").read_text().splitlines()
    items = itertools.takewhile(lambda line: line.startswith("    - "), layer[layer.index("  packages:") + 1 :])
    listed = [line.removeprefix("    - ") for line in items]
    assert listed == wanted
    assert "/scripts/install --source " in "\n".join(layer)
