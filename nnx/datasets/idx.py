"""Strict reader and atomic writer for the IDX format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 dimensions, then exactly ``prod(dims)`` big-endian
items. The files are usually gzipped; both forms are read (the compression is
recognised from the content, not the file name).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..atomic import atomic_write
from .errors import DatasetError

__all__ = ["read_idx", "write_idx"]

# IDX type code -> big-endian numpy dtype, as in the format's specification.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, fewer only at end of file."""
    parts = []
    while n > 0:
        chunk = f.read(min(n, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _parse(f: BinaryIO, name: str) -> np.ndarray:
    """Parse an open (already decompressed) IDX stream."""
    magic = _read_exactly(f, 4)
    if len(magic) < 4:
        raise DatasetError(
            f"{name}: file is only {len(magic)} bytes long, too short for an IDX header "
            "(file truncated?)"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise DatasetError(
            f"{name}: not an IDX file (magic number starts with 0x{magic[0]:02x} 0x{magic[1]:02x}, "
            "expected 0x00 0x00)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02x}" for c in _CODE_TO_DTYPE)
        raise DatasetError(f"{name}: unknown IDX data type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header declares 0 dimensions")
    raw_dims = _read_exactly(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DatasetError(
            f"{name}: header declares {ndim} dimensions but the file ends inside them "
            "(file truncated?)"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(dims) * dtype.itemsize
    what = f"{'x'.join(map(str, dims))} {dtype.name}"

    # Read in chunks (never trust the header for one big allocation) and count
    # whatever follows the expected payload.
    payload = bytearray()
    while len(payload) < expected:
        chunk = f.read(min(_CHUNK, expected - len(payload)))
        if not chunk:
            break
        payload += chunk
    found = len(payload)
    while chunk := f.read(_CHUNK):
        found += len(chunk)
    if found < expected:
        raise DatasetError(
            f"{name}: expected {expected} bytes of data for {what}, found {found} (file truncated?)"
        )
    if found > expected:
        raise DatasetError(
            f"{name}: expected {expected} bytes of data for {what}, found {found} "
            f"({found - expected} trailing bytes: wrong dimensions or not an IDX file?)"
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    if dtype.byteorder == ">":  # copy to the machine's byte order
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a writeable, native-endian numpy array."""
    path = Path(path)
    name = str(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == _GZIP_MAGIC:
                raw.seek(0)
                try:
                    with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                        return _parse(f, name)
                except EOFError as e:
                    raise DatasetError(
                        f"{name}: compressed data ends early ({e}) (file truncated?)"
                    ) from e
                except (gzip.BadGzipFile, zlib.error) as e:
                    raise DatasetError(f"{name}: corrupt gzip stream ({e})") from e
            raw.seek(0)
            return _parse(raw, name)
    except FileNotFoundError as e:
        raise DatasetError(f"{name}: no such file") from e


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file (gzipped if the name ends in .gz), atomically."""
    path = Path(path)
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"write_idx: dtype {array.dtype} has no IDX type code "
            "(use uint8, int8, int16, int32, float32 or float64)"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: dimension too large for IDX: {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()

    with atomic_write(path) as out:
        if path.suffix == ".gz":
            # mtime=0 and a fixed inner name keep the output reproducible.
            with gzip.GzipFile(filename=path.stem, mode="wb", fileobj=out, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            out.write(header)
            out.write(payload)
