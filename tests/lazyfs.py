"""A LazyFS-like FUSE filesystem: whatever was not fsynced is gone when the test cuts the power.

The model, per inode as in LazyFS: a file's bytes become durable only when that file is fsynced; a
directory's entries (create, rename, replace, unlink, mkdir, rmdir) only when that directory is
fsynced. A file whose entry is durable but whose bytes never were comes back empty, as on ext4
after a crash. Modes and times are not modelled (they are taken as durable at once).

The mounted view is the volatile state, held in memory. The backing directory is loaded at mount
and, once the filesystem is unmounted (the power cut), rewritten to hold exactly the durable state.
Run as root, in a process of its own (libfuse's loop blocks):

    python -m tests.lazyfs BACKING MOUNTPOINT    # prints "ready" once mounted, "saved" at the end

`LazyFS` drives it from a test; `fuse_unavailable()` says why it cannot run here, if it cannot.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import selectors
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_inos = itertools.count(2)


@dataclass(eq=False)
class Node:
    mode: int
    data: bytearray = field(default_factory=bytearray)  # volatile bytes (files)
    synced: bytes = b""  # durable bytes
    entries: dict[str, Node] = field(default_factory=dict)  # volatile entries (directories)
    synced_entries: dict[str, Node] = field(default_factory=dict)  # durable entries
    mtime_ns: int = field(default_factory=time.time_ns)
    ino: int = field(default_factory=lambda: next(_inos))

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def load(path: Path) -> Node:
    """The durable state is what the backing directory holds (regular files and directories only)."""
    st = os.lstat(path)
    node = Node(st.st_mode, mtime_ns=st.st_mtime_ns)
    if node.is_dir:
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                node.entries[entry.name] = load(Path(entry.path))
        node.synced_entries = dict(node.entries)
    else:
        node.synced = path.read_bytes()
        node.data = bytearray(node.synced)
    return node


def save(root: Node, backing: Path) -> None:
    """Rewrite `backing` to hold exactly the durable state under `root`."""
    for entry in os.scandir(backing):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    seen: set[int] = set()

    def put(node: Node, path: Path) -> None:
        seen.add(node.ino)
        for name, child in node.synced_entries.items():
            target = path / name
            if child.is_dir:
                if child.ino in seen:  # a directory moved under itself by half-synced renames
                    continue
                target.mkdir()
                put(child, target)
            else:
                target.write_bytes(child.synced)
            os.chmod(target, stat.S_IMODE(child.mode))

    put(root, backing)


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class LazyOps:
    """The mfusepy operations over the in-memory tree (single-threaded: no locks)."""

    use_ns = True

    def __init__(self, root: Node) -> None:
        self.root = root
        self.handles: dict[int, Node] = {}
        self._fhs = itertools.count(1)

    # -- lookups ---------------------------------------------------------------------------------
    def _lookup(self, path: str) -> Node:
        node = self.root
        for part in filter(None, path.split("/")):
            if not node.is_dir:
                raise _err(errno.ENOTDIR)
            if part not in node.entries:
                raise _err(errno.ENOENT)
            node = node.entries[part]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise _err(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh in self.handles:
            return self.handles[fh]
        if path is None:
            raise _err(errno.EBADF)
        return self._lookup(path)

    def _handle(self, node: Node) -> int:
        fh = next(self._fhs)
        self.handles[fh] = node
        return fh

    def _add(self, path: str, node: Node) -> Node:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _err(errno.EEXIST)
        parent.entries[name] = node
        parent.mtime_ns = time.time_ns()
        return node

    # -- mfusepy operations ----------------------------------------------------------------------
    def init(self, path: str) -> None:
        print("ready", flush=True)

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        n = self._node(path, fh)
        return {
            "st_mode": n.mode,
            "st_ino": n.ino,
            "st_nlink": 2 if n.is_dir else 1,
            "st_size": len(n.data),
            "st_blocks": (len(n.data) + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": n.mtime_ns,
            "st_mtime": n.mtime_ns,
            "st_ctime": n.mtime_ns,
        }

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20, "f_bfree": 1 << 19,
                "f_bavail": 1 << 19, "f_files": 1 << 16, "f_ffree": 1 << 15, "f_namemax": 255}

    def opendir(self, path: str) -> int:
        node = self._lookup(path)
        if not node.is_dir:
            raise _err(errno.ENOTDIR)
        return self._handle(node)

    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *self._node(path, fh).entries]

    def releasedir(self, path: str | None, fh: int) -> int:
        self.handles.pop(fh, None)
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        node = self._node(path, fh)
        node.synced_entries = dict(node.entries)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._add(path, Node(stat.S_IFDIR | stat.S_IMODE(mode)))
        return 0

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        return self._handle(self._add(path, Node(stat.S_IFREG | stat.S_IMODE(mode))))

    def open(self, path: str, flags: int) -> int:
        node = self._lookup(path)
        if node.is_dir:
            raise _err(errno.EISDIR)
        return self._handle(node)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._node(path, fh).data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        node = self._node(path, fh)
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        node = self._node(path, fh)
        del node.data[length:]
        node.data.extend(bytes(length - len(node.data)))
        node.mtime_ns = time.time_ns()
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close() makes nothing durable

    def release(self, path: str | None, fh: int) -> int:
        self.handles.pop(fh, None)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        node = self._node(path, fh)
        node.synced = bytes(node.data)
        return 0

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _err(errno.ENOENT)
        if node.is_dir:
            raise _err(errno.EISDIR)
        del parent.entries[name]
        parent.mtime_ns = time.time_ns()
        return 0

    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _err(errno.ENOENT)
        if not node.is_dir:
            raise _err(errno.ENOTDIR)
        if node.entries:
            raise _err(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime_ns = time.time_ns()
        return 0

    def rename(self, old: str, new: str) -> int:
        src, sname = self._parent(old)
        dst, dname = self._parent(new)
        node = src.entries.get(sname)
        if node is None:
            raise _err(errno.ENOENT)
        target = dst.entries.get(dname)
        if target is node:
            return 0
        if target is not None:
            if target.is_dir and (not node.is_dir or target.entries):
                raise _err(errno.EISDIR if not node.is_dir else errno.ENOTEMPTY)
            if node.is_dir and not target.is_dir:
                raise _err(errno.ENOTDIR)
        del src.entries[sname]
        dst.entries[dname] = node
        src.mtime_ns = dst.mtime_ns = time.time_ns()
        return 0

    def chmod(self, path: str | None, mode: int) -> int:
        node = self._node(path, None)
        node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        self._node(path, None).mtime_ns = times[1] if times else time.time_ns()
        return 0


def main(argv: list[str]) -> int:
    import mfusepy

    class Ops(LazyOps, mfusepy.Operations):  # mfusepy wires only the methods a class defines
        pass

    backing, mountpoint = Path(argv[0]), argv[1]
    root = load(backing)
    mfusepy.FUSE(Ops(root), mountpoint, foreground=True, nothreads=True, fsname="lazyfs", hard_remove=True)
    save(root, backing)
    print("saved", flush=True)
    return 0


# -- the test side ---------------------------------------------------------------------------------
class LazyFSError(RuntimeError):
    pass


class LazyFS:
    """Mounts the lazy filesystem over `backing` at `mountpoint`; `cut_power()` unmounts it, and then
    `backing` holds only what was fsynced. Mount again to go on from there."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing, self.mountpoint = backing, mountpoint
        self._proc: subprocess.Popen[str] | None = None
        self._log: Any = None  # the child's stderr (a file: a pipe could fill up and stall it)

    def _line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return ""
        return self._proc.stdout.readline().strip()

    def _failure(self, what: str) -> LazyFSError:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(10)
        self._log.seek(0)
        lines = [x for x in self._log.read().splitlines() if x and not x[0].isspace() and x[:9] != "Traceback"]
        self._done()
        return LazyFSError(f"lazyfs: {what}: {'; '.join(lines) or 'no message'}")

    def _done(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        self._proc.stdout.close()
        self._log.close()
        self._proc = None

    def mount(self, timeout: float = 15.0) -> None:
        assert self._proc is None, "already mounted"
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (lives as long as the mount)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lazyfs", str(self.backing), str(self.mountpoint)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        if self._line(timeout) != "ready":
            raise self._failure("mount failed")

    def cut_power(self, timeout: float = 15.0) -> None:
        """Unmount: everything not fsynced is dropped, the backing directory gets the durable state."""
        if self._proc is None:
            return
        if subprocess.run(["umount", str(self.mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)  # a leftover open file
        if self._line(timeout) != "saved" or self._proc.wait(timeout) != 0:
            raise self._failure("did not save its durable state")
        self._done()

    def close(self) -> None:
        if self._proc is not None:
            try:
                self.cut_power()
            except LazyFSError:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)

    def __enter__(self) -> LazyFS:
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def fuse_unavailable() -> str | None:
    """Why the lazy filesystem cannot run here, or None when a trial mount works."""
    if os.geteuid() != 0:
        return "the power-cut filesystem needs root (FUSE mount)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # noqa: F401  (loads libfuse)
    except (ImportError, OSError) as e:
        return f"mfusepy/libfuse unavailable: {e} (pip install mfusepy; apt-get install fuse3)"
    with tempfile.TemporaryDirectory() as tmp:
        backing, mnt = Path(tmp, "backing"), Path(tmp, "mnt")
        backing.mkdir()
        mnt.mkdir()
        fs = LazyFS(backing, mnt)
        try:
            fs.mount()
            fs.cut_power()
        except LazyFSError as e:
            fs.close()
            return str(e)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
