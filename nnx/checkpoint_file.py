"""Reading an .npz checkpoint defensively: one member at a time, headers checked first.

``numpy.load`` on an .npz decompresses whatever member is asked for and trusts
its header; a truncated, corrupt or hostile file then surfaces as a raw
``BadZipFile``, a ``MemoryError`` or advice to pass ``allow_pickle``.  Here a
member's .npy header is read and checked (dtype, no objects, the shape the model
expects, a size that agrees with the zip directory) before any payload is read,
and every failure is a :class:`CheckpointError` naming the file and the reason.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "CheckpointFile"]

META_MEMBER = "__meta__"
MAX_META_BYTES = 16 << 20  # JSON settings and RNG states: kilobytes in practice


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: unreadable, corrupt, or not for this model/optimizer.

    Raised before anything is changed: the model and optimizer stay as they were.
    """


class CheckpointFile:
    """An open checkpoint: member names, the metadata, and checked reads of arrays."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise self.error(
                f"not a readable nnx checkpoint (truncated or corrupt: {err})"
            ) from None
        self.members = {
            info.filename[: -len(".npy")]: info
            for info in self._zip.infolist()
            if info.filename.endswith(".npy")
        }

    def __enter__(self) -> CheckpointFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def error(self, reason: str) -> CheckpointError:
        """A CheckpointError naming this file."""
        return CheckpointError(f"{self.path}: {reason}")

    def names(self, prefix: str) -> set[str]:
        """Member names (without .npy) that start with ``prefix``, prefix removed."""
        return {n[len(prefix) :] for n in self.members if n.startswith(prefix)}

    def metadata(self) -> dict[str, Any]:
        """The JSON document, parsed (size-capped; corrupt JSON is a CheckpointError)."""
        if META_MEMBER not in self.members:
            raise self.error("an .npz file but not an nnx checkpoint (no metadata)")
        raw = self.array(META_MEMBER, kinds="u", max_bytes=MAX_META_BYTES)
        if raw.ndim != 1 or raw.dtype.itemsize != 1:
            raise self.error("truncated or corrupt (metadata is not a byte string)")
        try:
            meta = json.loads(raw.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self.error(f"truncated or corrupt (metadata is not valid JSON: {err})") from None
        if not isinstance(meta, dict):
            raise self.error("truncated or corrupt (metadata is not a JSON object)")
        return meta

    def array(
        self,
        name: str,
        *,
        shape: tuple[int, ...] | None = None,
        kinds: str = "fiub",
        max_bytes: int | None = None,
    ) -> np.ndarray:
        """Member ``name`` as an array, its header checked before the payload is read.

        ``shape`` is the shape the caller needs (None: any); ``kinds`` the
        accepted dtype kinds (numpy's one-letter codes).
        """
        info = self.members.get(name)
        if info is None:
            raise self.error(f"has no entry {name!r}")
        try:
            with self._zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    found, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    found, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unknown .npy version {version}")
                header_bytes = f.tell()
                if dtype.hasobject or dtype.kind not in kinds:
                    raise self.error(
                        f"entry {name!r} holds {dtype} data, expected numbers of kind {kinds!r}"
                    )
                if shape is not None and tuple(found) != tuple(shape):
                    raise self.error(
                        f"cannot load {name.removeprefix('model/')!r}: the checkpoint has shape {tuple(found)}, "
                        f"the model has {tuple(shape)} (a different architecture?)"
                    )
                nbytes = math.prod(found) * dtype.itemsize
                if max_bytes is not None and nbytes > max_bytes:
                    raise self.error(f"entry {name!r} is implausibly large ({nbytes} bytes)")
                if info.file_size != header_bytes + nbytes:
                    raise self.error(
                        f"truncated or corrupt (entry {name!r}: header says {nbytes} bytes of "
                        f"data, the archive holds {info.file_size - header_bytes})"
                    )
                data = f.read(nbytes)
                if len(data) != nbytes or f.read(1):  # reading to the end checks the CRC
                    raise ValueError(f"entry {name!r} has the wrong length")
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, SyntaxError) as err:
            raise self.error(f"truncated or corrupt ({type(err).__name__}: {err})") from None
        order = "F" if fortran else "C"
        return np.frombuffer(data, dtype=dtype).reshape(found, order=order).copy()
