"""Tests for nnx.datasets: IDX reading/writing, mirrored checksummed downloads, MNIST loaders.

The only network used is a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from nnx.datasets import (
    DatasetError,
    cache_dir,
    fashion_mnist,
    fetch,
    load_idx_dataset,
    mnist,
    read_idx,
    write_idx,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


# --------------------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_split(folder: Path, split: str = "train", n: int = 5, seed: int = 0):
    """Write n random 28x28 images and labels as gzipped IDX; return arrays and file bytes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    img_name, lbl_name = NAMES[split]
    write_idx(folder / img_name, images)
    write_idx(folder / lbl_name, labels)
    blobs = {img_name: (folder / img_name).read_bytes(), lbl_name: (folder / lbl_name).read_bytes()}
    return images, labels, blobs


class Handler(BaseHTTPRequestHandler):
    """Serves server.routes: path -> (bytes, mode); mode is 'plain', 'range' or 'drop'."""

    def do_GET(self) -> None:
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if self.path not in srv.routes:
            self.send_error(404)
            return
        data, mode = srv.routes[self.path]
        if mode == "range" and rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes=") : -1])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            srv.sent += len(data) - start
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "drop":  # promise the whole file, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            srv.sent += len(data) // 2
            return
        self.wfile.write(data)
        srv.sent += len(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.routes = {}
    srv.requests = []
    srv.sent = 0
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"

    def serve(prefix: str, blobs: dict[str, bytes], mode: str = "plain") -> str:
        for name, data in blobs.items():
            srv.routes[f"/{prefix}/{name}"] = (data, mode)
        return f"{srv.base}/{prefix}/"

    srv.serve = serve
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture
def dead_mirror() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NNX_DATA", str(root))
    return root


@pytest.fixture
def blob(tmp_path):
    """A small gzipped IDX file: (name, bytes, sha256)."""
    src = tmp_path / "src"
    src.mkdir()
    _, _, blobs = make_split(src)
    name = "train-images-idx3-ubyte.gz"
    return name, blobs[name], sha(blobs[name])


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path, dtype, suffix):
    x = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, x)
    y = read_idx(path)
    assert y.dtype == np.dtype(dtype) and y.dtype.isnative and y.flags.writeable
    np.testing.assert_array_equal(x, y)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_idx_header_is_big_endian(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    good = bytes([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(10 * 28 * 28)
    path = tmp_path / ("images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(good[:1234]) if gz else good[:1234])
    with pytest.raises(DatasetError, match=r"expected 7840 bytes .* found 1218 \(file truncated"):
        read_idx(path)
    with pytest.raises(DatasetError, match=path.name):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    data = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 3, 232]) + bytes(range(256)) * 4)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"{path.name}: .*truncated"):
        read_idx(path)


def test_read_idx_corrupt_gzip_stream(tmp_path):
    data = bytearray(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4])))
    data[-8] ^= 0xFF  # break the CRC
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=path.name):
        read_idx(path)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DatasetError, match=r"not-idx: not an IDX file"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DatasetError, match=r"not-idx: unknown IDX data type code 0x42"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match=r"not-idx: .*too short"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.arange(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DatasetError, match=r"labels-idx1-ubyte: expected 5 bytes .* found 9"):
        read_idx(path)


def test_read_idx_huge_header_does_not_allocate(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3 + bytes(100))
    with pytest.raises(DatasetError, match="file truncated"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- cache_dir


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "d"))
    assert cache_dir() == tmp_path / "d"
    assert cache_dir("mnist") == tmp_path / "d" / "mnist"
    monkeypatch.delenv("NNX_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "nnx" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "nnx"


# --------------------------------------------------------------------------- fetch


def test_fetch_good_download(server, tmp_path, blob):
    name, data, digest = blob
    mirror = server.serve("good", {name: data})
    out = fetch(name, digest, [mirror], tmp_path / "c")
    assert out == tmp_path / "c" / name and out.read_bytes() == data
    assert sorted(p.name for p in out.parent.iterdir()) == [name]  # no .part left
    # Second call: served from the cache, no request.
    n = len(server.requests)
    assert fetch(name, digest, [mirror], tmp_path / "c") == out
    assert len(server.requests) == n


def test_fetch_rejects_corrupt_mirror(server, tmp_path, blob):
    name, data, digest = blob
    bad = server.serve("bad", {name: data[:-10] + bytes(10)})
    good = server.serve("good", {name: data})
    out = fetch(name, digest, [bad, good], tmp_path)
    assert out.read_bytes() == data
    assert [p for p, _ in server.requests] == [f"/bad/{name}", f"/good/{name}"]


def test_fetch_dropped_connection(server, tmp_path, blob):
    name, data, digest = blob
    drop = server.serve("drop", {name: data}, mode="drop")
    with pytest.raises(DatasetError, match=r"connection closed after \d+ of \d+ bytes"):
        fetch(name, digest, [drop], tmp_path)
    assert not (tmp_path / name).exists()  # nothing complete-looking
    part = tmp_path / (name + ".part")
    assert part.read_bytes() == data[: len(data) // 2]  # kept for resuming

    # Falls through to the next mirror, which here does not resume: starts over.
    good = server.serve("good", {name: data})
    assert fetch(name, digest, [drop, good], tmp_path).read_bytes() == data
    assert not part.exists()


def test_fetch_dead_mirror(server, tmp_path, blob, dead_mirror):
    name, data, digest = blob
    good = server.serve("good", {name: data})
    assert fetch(name, digest, [dead_mirror, good], tmp_path).read_bytes() == data


def test_fetch_resumes_with_range(server, tmp_path, blob):
    name, data, digest = blob
    half = len(data) // 2
    (tmp_path / (name + ".part")).write_bytes(data[:half])
    mirror = server.serve("r", {name: data}, mode="range")
    assert fetch(name, digest, [mirror], tmp_path).read_bytes() == data
    assert server.requests == [(f"/r/{name}", f"bytes={half}-")]
    assert server.sent == len(data) - half


def test_fetch_drop_then_resume_on_next_mirror(server, tmp_path, blob):
    name, data, digest = blob
    drop = server.serve("drop", {name: data}, mode="drop")
    resume = server.serve("r", {name: data}, mode="range")
    assert fetch(name, digest, [drop, resume], tmp_path).read_bytes() == data
    assert server.requests[1] == (f"/r/{name}", f"bytes={len(data) // 2}-")


def test_fetch_bad_partial_file_is_redone(server, tmp_path, blob):
    name, data, digest = blob
    (tmp_path / (name + ".part")).write_bytes(b"garbage" * 10)
    mirror = server.serve("r", {name: data}, mode="range")
    assert fetch(name, digest, [mirror], tmp_path).read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=70-", None]  # resume, then afresh


def test_fetch_server_ignoring_range_starts_over(server, tmp_path, blob):
    name, data, digest = blob
    (tmp_path / (name + ".part")).write_bytes(b"garbage")
    mirror = server.serve("plain", {name: data})  # answers 200 to a Range request
    assert fetch(name, digest, [mirror], tmp_path).read_bytes() == data


def test_fetch_replaces_bad_cached_file(server, tmp_path, blob):
    name, data, digest = blob
    (tmp_path / name).write_bytes(b"stale")
    mirror = server.serve("good", {name: data})
    assert fetch(name, digest, [mirror], tmp_path).read_bytes() == data


def test_fetch_all_mirrors_fail(server, tmp_path, blob, dead_mirror):
    name, data, digest = blob
    bad = server.serve("bad", {name: b"not the file"})
    missing = f"{server.base}/missing/"
    with pytest.raises(DatasetError) as info:
        fetch(name, digest, [dead_mirror, bad, missing], tmp_path / "c")
    msg = str(info.value)
    assert f"{dead_mirror}{name}: cannot connect" in msg
    assert f"{bad}{name}: wrong checksum" in msg
    assert f"{missing}{name}: HTTP 404" in msg
    assert str(tmp_path / "c") in msg and name in msg and digest in msg
    assert list((tmp_path / "c").iterdir()) == []


# --------------------------------------------------------------------------- loaders


def test_mnist_download_then_cache(server, cache, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    images, labels, blobs = make_split(src, "test", n=5)
    mirror = server.serve("m", blobs)
    sums = {k: sha(v) for k, v in blobs.items()}
    x, y = load_idx_dataset("mnist", "test", mirrors=[mirror], checksums=sums)
    assert x.shape == (5, 28, 28) and x.dtype == np.uint8 and y.shape == (5,)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(blobs)
    # Offline afterwards: the verified cache is enough.
    n = len(server.requests)
    x2, _ = load_idx_dataset("mnist", "test", download=False, mirrors=[], checksums=sums)
    np.testing.assert_array_equal(x2, images)
    assert len(server.requests) == n


def test_mnist_all_mirrors_fail_names_cache_and_files(cache, dead_mirror):
    with pytest.raises(DatasetError) as info:
        load_idx_dataset("mnist", "train", mirrors=[dead_mirror])
    msg = str(info.value)
    assert str(cache / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg


def test_mnist_offline_error_says_how(cache):
    with pytest.raises(DatasetError, match="download=True") as info:
        mnist("test", download=False)
    assert str(cache / "mnist") in str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist("validation")


def test_root_folder_gz_and_raw(tmp_path, cache):
    images, labels, _ = make_split(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)  # uncompressed works too
    x, y = mnist("train", root=tmp_path, download=False)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_root_folder_missing_files(tmp_path, cache):
    make_split(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as info:
        mnist("train", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "train-labels-idx1-ubyte" in msg
    assert "train-images" not in msg
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"):
        mnist("test", root=tmp_path)


def test_root_folder_count_mismatch(tmp_path, cache):
    make_split(tmp_path, "train", n=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        mnist("train", root=tmp_path)


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(),
    reason=f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian(cache):
    x, y = fashion_mnist("test", download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert set(np.unique(y).tolist()) == set(range(10))
    assert np.bincount(y).tolist() == [1000] * 10
    x, y = fashion_mnist("train", download=False)
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
