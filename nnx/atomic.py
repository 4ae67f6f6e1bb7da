"""``atomic_write``: the one way nnx writes a file (checkpoints, IDX files, plots).

The data goes to a temporary file in the target's folder, named after the
target (``.<name>.<pid>.<random>.nnx-tmp``), is flushed and fsync'ed, then moved
over the target with ``os.replace``: a reader sees the old file or the new one,
never half of one.  What happens when things go wrong:

- an exception inside the ``with`` block (KeyboardInterrupt included) removes
  the temporary file and leaves the old target untouched;
- SIGTERM (a scheduler preempting the job): while the block runs in the main
  thread, a handler removes the temporary file, restores the previous handler
  and delivers SIGTERM to it again (the default one ends the process as
  usual).  Python can only install signal handlers in the main thread: a write
  from another thread leaves SIGTERM to the process's own handler, and a
  temporary file left behind is removed by the next write of the same target;
- SIGKILL or a power cut cannot be caught: the temporary file stays behind
  until the next write of the same target removes the temporaries of writers
  that no longer run.

The target: a symlink is followed (the file it points to is replaced, the link
stays); a directory, FIFO, socket or device node is refused.  A new file gets
the permissions ``open()`` would give it (0666 less the umask); an existing
file keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "check_target", "temp_files_of"]

_SUFFIX = ".nnx-tmp"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(_SUFFIX)}$")


def temp_files_of(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files (of any writer, running or not) that belong to target ``path``."""
    target = Path(os.path.realpath(path))
    pattern = _temp_pattern(target.name)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return [target.parent / n for n in names if pattern.match(n)]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _remove_stale_temps(target: Path) -> None:
    """Remove temporaries of ``target`` whose writing process has ended (SIGKILL, crash)."""
    pattern = _temp_pattern(target.name)
    for tmp in temp_files_of(target):
        m = pattern.match(tmp.name)
        if m and not _process_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _resolve_target(path: str | os.PathLike[str]) -> tuple[Path, int | None]:
    """The real file to replace (symlinks followed) and its permission bits if it exists."""
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path} is a directory; give the path of a file to write")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device node"
        )
        raise ValueError(
            f"{path} is {kind}, not a regular file; nnx writes only regular files "
            "(choose another path)"
        )
    return target, stat.S_IMODE(st.st_mode)


def check_target(path: str | os.PathLike[str]) -> None:
    """Raise now what :func:`atomic_write` would raise for ``path`` (directory, FIFO, device)."""
    _resolve_target(path)


class _Terminated(BaseException):
    """SIGTERM arrived while a temporary file was open."""


@contextlib.contextmanager
def _sigterm_cleanup(path: Path) -> Iterator[None]:
    """Turn SIGTERM into an exception for the block (main thread only), then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_IGN, None):  # ignored, or a handler Python cannot restore
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    terminated = False
    try:
        yield
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated:
        signal.raise_signal(signal.SIGTERM)  # the previous handler decides what happens
        raise InterruptedError(f"writing {path} was interrupted by SIGTERM; the old file is kept")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block ends cleanly.

    ``with atomic_write("run.npz") as f: np.savez(f, ...)``.  ``mode`` is "wb"
    (default) or "w" (text, UTF-8).  Creates the parent folder if needed.
    See the module docstring for what happens on errors and signals.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    target, keep_mode = _resolve_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{_SUFFIX}"
    with _sigterm_cleanup(target):
        try:
            # O_EXCL with mode 0666: the umask applies, as for open()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            if keep_mode is not None:
                os.chmod(tmp, keep_mode)
            kwargs = {"encoding": "utf-8"} if mode == "w" else {}
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
