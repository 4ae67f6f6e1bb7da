"""Download a file from a list of mirrors into a cache folder, with SHA-256 checks.

A download streams into ``<name>.part`` next to its final place, resumes such a
partial file with an HTTP Range request when the server allows it, and is moved
into place with ``os.replace`` only once its checksum is right: the cache never
holds a file under its final name that is incomplete or wrong.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .errors import DatasetError

__all__ = ["cache_dir", "fetch"]

logger = logging.getLogger(__name__)

_USER_AGENT = "nnx-datasets/0.1 (Python urllib)"
_CHUNK = 1 << 20
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


def _download(url: str, part: Path, timeout: float) -> None:
    """Stream url into part, resuming part when the server answers 206; raise _MirrorError."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            # Our partial file is not a prefix of what the server has: start over.
            part.unlink(missing_ok=True)
            return _download(url, part, timeout)
        raise _MirrorError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _MirrorError(f"cannot connect: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _MirrorError(f"cannot connect: {e!r}") from None

    with resp:
        status = resp.status or 200  # file: URLs have no status
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
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
            except (OSError, http.client.HTTPException) as e:  # timeout, reset, IncompleteRead
                raise _MirrorError(
                    f"connection lost after {offset + received} bytes ({e!r}); "
                    f"partial file kept for resuming"
                ) from None
            finally:
                out.flush()
                os.fsync(out.fileno())
        # http.client returns b"" when the server closes early: check the length ourselves.
        if length is not None and received < length:
            raise _MirrorError(
                f"connection closed after {offset + received} of {offset + length} bytes; "
                "partial file kept for resuming"
            )
    return None


def fetch(
    filename: str,
    sha256: str | Sequence[str],
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
) -> Path:
    """Return cache_dir/filename, downloading it from the first mirror that serves the right file.

    ``sha256`` is the expected hex digest, or several accepted digests. A cached
    file with a matching checksum is returned without any network access.
    """
    folder = Path(cache_dir)
    accepted = [sha256.lower()] if isinstance(sha256, str) else [s.lower() for s in sha256]
    if not accepted:
        raise ValueError("fetch: at least one SHA-256 digest is needed")
    final = folder / filename
    part = folder / (filename + ".part")

    stale = None
    if final.exists():
        digest = _sha256(final)
        if digest in accepted:
            return final
        stale = f"{final} exists but has SHA-256 {digest}, expected {accepted[0]}"
        logger.warning("%s; downloading it again", stale)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(
            f"cannot create the data cache folder {folder} ({e}); set NNX_DATA to a writable folder"
        ) from e

    failures: list[tuple[str, str]] = []
    for mirror in mirrors:
        url = _join(mirror, filename)
        resumed = part.exists() and part.stat().st_size > 0
        for _attempt in range(2):  # a second, fresh try only after a failed resume
            logger.info("downloading %s%s", url, " (resuming)" if resumed else "")
            try:
                _download(url, part, timeout)
            except _MirrorError as e:
                failures.append((url, str(e)))
                break
            digest = _sha256(part)
            if digest in accepted:
                os.replace(part, final)
                return final
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
