"""Download a file from a list of mirrors into a cache folder, with SHA-256 checks.

A download streams into ``<name>.part`` next to its final place, resumes such a
partial file with an HTTP Range request when the server allows it, and is moved
into place with ``os.replace`` only once its checksum is right: the cache never
holds a file under its final name that is incomplete or wrong.

Safeguards: processes sharing a cache folder take turns (``fcntl.flock`` on the
folder; no lock on platforms without fcntl), so one downloads and the others
find the verified file; a file never grows past its
expected size; each file has an overall deadline (a server trickling bytes
cannot hold a download past it); only http and https URLs are used, redirects
included; the checksum decides, not the Content-Length header.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]

from .errors import DatasetError

__all__ = ["cache_dir", "fetch"]

logger = logging.getLogger(__name__)

_USER_AGENT = "nnx-datasets/0.1 (Python urllib)"
_CHUNK = 1 << 20
_SCHEMES = ("http", "https")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def cache_dir(dataset: str | None = None) -> Path:
    """Return the nnx data cache folder ($NNX_DATA, else $XDG_CACHE_HOME/nnx or ~/.cache/nnx)."""
    env = os.environ.get("NNX_DATA")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nnx"
    return base / dataset if dataset else base


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _MirrorError(Exception):
    """One mirror failed; the message says why."""


def _join(mirror: str, filename: str) -> str:
    """URL of filename on a mirror (with or without a trailing slash)."""
    return mirror.rstrip("/") + "/" + filename


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http and https URLs."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in _SCHEMES:
            fp.close()
            raise _MirrorError(f"redirected to {newurl}: only http and https URLs are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _download(url: str, part: Path, timeout: float, deadline: float, max_bytes: int | None) -> None:
    """Stream url into part, resuming part when the server answers 206; raise _MirrorError.

    ``deadline`` is a time.monotonic() value; ``max_bytes`` caps the size of part.
    """
    if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        raise _MirrorError("not an http or https URL")
    left = deadline - time.monotonic()
    if left <= 0:
        raise _MirrorError("no time left before the download's deadline")
    offset = part.stat().st_size if part.exists() else 0
    if max_bytes is not None and offset > max_bytes:
        part.unlink()
        offset = 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        resp = _OPENER.open(request, timeout=min(timeout, left))
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            # Our partial file is not a prefix of what the server has: start over.
            part.unlink(missing_ok=True)
            return _download(url, part, timeout, deadline, max_bytes)
        raise _MirrorError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _MirrorError(f"cannot connect: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _MirrorError(f"cannot connect: {e!r}") from None

    with resp:
        status = resp.status
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise _MirrorError(
                    f"server resumed at the wrong place (Content-Range "
                    f"{resp.headers.get('Content-Range')!r}, asked for byte {offset})"
                )
            mode = "ab"
        elif status == 200:
            mode, offset = "wb", 0  # server ignored the Range request: start over
        else:
            raise _MirrorError(f"unexpected HTTP status {status}")
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None

        received = 0
        with open(part, mode) as out:
            try:
                # read1: whatever has arrived, so a trickling server cannot pass the deadline
                while chunk := resp.read1(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if max_bytes is not None and offset + received > max_bytes:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise _MirrorError(
                            f"sent more than the expected {max_bytes} bytes; download discarded"
                        )
                    if time.monotonic() > deadline:
                        raise _MirrorError(
                            f"too slow: {offset + received} bytes by the deadline; "
                            "partial file kept for resuming"
                        )
            except (OSError, http.client.HTTPException) as e:  # timeout, reset, IncompleteRead
                raise _MirrorError(
                    f"connection lost after {offset + received} bytes ({e!r}); "
                    f"partial file kept for resuming"
                ) from None
            finally:
                if not out.closed:
                    out.flush()
                    os.fsync(out.fileno())
        # http.client returns b"" when the server closes early. The checksum decides
        # whether the file is complete; this only explains a wrong one.
        if length is not None and received < length:
            raise _ShortRead(
                f"connection closed after {offset + received} of {offset + length} bytes; "
                "partial file kept for resuming"
            )
    return None


class _ShortRead(_MirrorError):
    """Fewer bytes than Content-Length: the file may still be complete (wrong header)."""


@contextlib.contextmanager
def _cache_lock(folder: Path, wait: float) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (waiting up to ``wait`` s for another process).

    The folder itself is locked (flock works on a directory's descriptor), so no
    lock file is left behind.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        give_up = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    raise DatasetError(
                        f"another process has been downloading into {folder} for over "
                        f"{wait:.0f} s; try again later"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def fetch(
    filename: str,
    sha256: str | Sequence[str],
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    size: int | Sequence[int] | None = None,
    timeout: float = 30.0,
    deadline: float = 900.0,
) -> Path:
    """Return cache_dir/filename, downloading it from the first mirror that serves the right file.

    ``sha256`` is the expected hex digest, or several accepted digests; ``size``
    the expected size in bytes (or one per digest): nothing larger is ever
    read.  ``timeout`` bounds each network wait, ``deadline`` the whole fetch
    of this file (seconds).  A cached file with a matching checksum is returned
    without any network access.  Processes sharing ``cache_dir`` take turns:
    the second finds the file the first verified.
    """
    folder = Path(cache_dir)
    accepted = [sha256.lower()] if isinstance(sha256, str) else [s.lower() for s in sha256]
    if not accepted:
        raise ValueError("fetch: at least one SHA-256 digest is needed")
    sizes = [size] if isinstance(size, int) else list(size or [])
    max_bytes = max(sizes) if sizes else None
    final = folder / filename

    if final.exists() and _sha256(final) in accepted:
        return final
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(
            f"cannot create the data cache folder {folder} ({e}); set NNX_DATA to a writable folder"
        ) from e
    with _cache_lock(folder, wait=deadline + 2 * timeout):
        return _fetch_locked(
            filename, accepted, mirrors, folder, timeout, time.monotonic() + deadline, max_bytes
        )


def _fetch_locked(
    filename: str,
    accepted: list[str],
    mirrors: Sequence[str],
    folder: Path,
    timeout: float,
    deadline: float,
    max_bytes: int | None,
) -> Path:
    """fetch() once the lock is held: another process may have finished meanwhile."""
    final = folder / filename
    part = folder / (filename + ".part")
    stale = None
    if final.exists():
        digest = _sha256(final)
        if digest in accepted:
            return final
        stale = f"{final} exists but has SHA-256 {digest}, expected {accepted[0]}"
        logger.warning("%s; downloading it again", stale)

    failures: list[tuple[str, str]] = []
    for mirror in mirrors:
        url = _join(mirror, filename)
        resumed = part.exists() and part.stat().st_size > 0
        for _attempt in range(2):  # a second, fresh try only after a failed resume
            logger.info("downloading %s%s", url, " (resuming)" if resumed else "")
            short = None
            try:
                _download(url, part, timeout, deadline, max_bytes)
            except _ShortRead as e:
                short = str(e)  # the checksum decides below
            except _MirrorError as e:
                failures.append((url, str(e)))
                break
            digest = _sha256(part)
            if digest in accepted:
                os.replace(part, final)
                return final
            if short is not None:  # keep the partial file for resuming
                failures.append((url, short))
                break
            part.unlink(missing_ok=True)
            if resumed:  # the old partial file may have been the bad part
                resumed = False
                continue
            failures.append((url, f"wrong checksum: got SHA-256 {digest}, expected {accepted[0]}"))
            break

    lines = [f"could not download {filename} from any mirror:"]
    lines += [f"  {url}: {why}" for url, why in failures] or ["  (no mirrors given)"]
    if stale:
        lines.append(f"  ({stale})")
    lines.append(
        f"To install it by hand, download {filename} from one of the URLs above and put it in "
        f"{folder}{os.sep} (SHA-256 {accepted[0]})."
    )
    raise DatasetError("\n".join(lines))
