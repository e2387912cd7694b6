"""Opening files as root where someone else may have planted something (docs/security.md).

- `open_regular`: never through a symbolic link (O_NOFOLLOW), never blocking on a FIFO or
  a device (O_NONBLOCK), and only a regular file, checked on the open descriptor (fstat),
  not on the name, so nothing can be swapped in between the check and the use;
- `create_temp`: a new file with a name nobody could have guessed and planted (O_EXCL,
  as mkstemp), for the write-then-rename of a file that must change whole.

Errors are `UnsafeFile`: an OSError whose text names the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import tempfile

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


class UnsafeFile(OSError):
    """A file hbd will not use as it is; `str()` is `PATH: what is wrong`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(errno.EPERM, problem, path)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def open_regular(
    path: str, flags: int = os.O_RDONLY, mode: int = 0o600, *, follow: bool = False
) -> int:
    """Open `path` (flags as os.open; O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC are added) and
    return the descriptor of a regular file; raise UnsafeFile for a symbolic link or any
    other kind of file, and OSError (FileNotFoundError, ...) as os.open does. `follow`:
    a symbolic link is followed (its target is what is checked, on the open descriptor)."""
    all_flags = flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if not follow:
        all_flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, all_flags, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeFile(path, "is a symbolic link; hbd does not follow one here") from None
        if e.errno == errno.ENXIO:  # O_WRONLY on a FIFO nobody reads
            raise UnsafeFile(path, "is a FIFO, not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFile(path, f"is {kind(st.st_mode)}, not a regular file")
    os.set_blocking(fd, True)
    return fd


def check_owner(path: str, st: os.stat_result) -> None:
    """Refuse a file owned by anyone but root or the user hbd runs as."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        allowed = "root" if me == 0 else f"root or {user_name(me)}"
        raise UnsafeFile(
            path,
            f"owned by {user_name(st.st_uid)} (uid {st.st_uid}), not by {allowed}; "
            f"hbd will not use it. Fix: chown root {path}",
        )


def check_not_writable_by_others(path: str, st: os.stat_result) -> None:
    """Refuse a file that users other than its owner (and root's group) may change: what
    hbd reads from it decides what runs as root."""
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0):
        who = "everyone" if st.st_mode & stat.S_IWOTH else f"group {group_name(st.st_gid)}"
        raise UnsafeFile(
            path,
            f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}), and what it says "
            f"runs as root; hbd will not use it. Fix: chmod go-w {path}",
        )


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def read_regular(
    path: str, limit: int = 1 << 20, *, follow: bool = False
) -> tuple[bytes, os.stat_result]:
    """The content (at most `limit` bytes) and fstat of the regular file `path`."""
    fd = open_regular(path, follow=follow)
    try:
        st = os.fstat(fd)
        if st.st_size > limit:
            raise UnsafeFile(path, f"is {st.st_size} bytes long, more than {limit} hbd reads")
        chunks: list[bytes] = []
        size = 0
        while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def create_temp(directory: str, prefix: str, mode: int = 0o644) -> tuple[int, str]:
    """A new, empty regular file in `directory` that did not exist before (O_EXCL: a
    planted name or symbolic link is never opened), with `mode`: (descriptor, path)."""
    fd, path = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path
