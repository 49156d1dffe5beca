"""Terminals: a pty created inside the container, its master sent over the console socket (runc's protocol).

The pty is opened from the container's own devpts through ``/dev/pts/ptmx`` with ``O_NOFOLLOW`` and verified to
be the ptmx device, and the peer is opened with ``TIOCGPTPEER`` rather than by a path the container controls
(CVE-2025-52565).
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import stat

from sampan._linux import process as sys_
from sampan._linux.fs import fstatfs_type
from sampan._linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, openat2
from sampan.errors import SampanError

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Callable


DEVPTS_SUPER_MAGIC = 0x1CD1


def open_pty() -> tuple[int, int]:
    """(master, slave) from the container's devpts instance: /dev/pts reached without following any link and
    checked to be devpts before ptmx is opened in it."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pts = openat2(root, "dev/pts", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                      RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root)
    try:
        if fstatfs_type(pts) != DEVPTS_SUPER_MAGIC:
            raise SampanError("/dev/pts in the container is not a devpts filesystem")
        master = os.open("ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pts)
    finally:
        os.close(pts)
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != 5 or os.minor(st.st_rdev) != 2:
        os.close(master)
        raise SampanError("/dev/pts/ptmx in the container is not the ptmx device")
    fcntl.ioctl(master, 0x40045431, b"\0\0\0\0")  # TIOCSPTLCK: unlock
    slave = sys_.ioctl_int(master, sys_.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return master, slave


def socket_from_fd(fd: int) -> socket.socket:
    """The console socket the runtime connected (runc's --console-socket), as inherited by the container's init."""
    return socket.socket(fileno=fd)


def send_fd(sock: socket.socket, fd: int, name: str) -> None:
    """runc's console-socket message: the pty name as payload, the master fd as SCM_RIGHTS."""
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def recv_fd(sock: socket.socket) -> int:
    fds = array.array("i")
    _, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise SampanError("no file descriptor received on the console socket")
    return fds[0]


def make_controlling(slave: int) -> None:
    """Make the pty slave our controlling terminal and stdio (we are a session leader)."""
    sys_.ioctl_int(slave, sys_.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def proxy(master: int, done: Callable[[], bool]) -> None:
    """Foreground ``run -t`` without a console socket: copy our stdin to the pty and the pty to our stdout.

    Our terminal (if stdin is one) goes raw for the duration so keys reach the container unchanged.
    """
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        rows, cols = os.get_terminal_size(0).lines, os.get_terminal_size(0).columns
        sys_.set_winsize(master, rows, cols)
    sources = [master, 0]
    try:
        while True:
            finished = done()  # read before looking: output written just before the exit is still copied
            ready, _, _ = select.select(sources, [], [], 0.0 if finished else 0.1)
            if finished and master not in ready:
                break
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    sources.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
