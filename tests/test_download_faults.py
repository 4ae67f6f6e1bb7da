"""Downloads against misbehaving servers (concurrency, floods, trickles, odd redirects, lying
headers) and IDX files under random damage.

The only network used is a local http.server on 127.0.0.1; every test is
bounded by short timeouts and deadlines.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnx.datasets import DatasetError, fetch, load_idx_dataset, read_idx, write_idx

DATA = bytes(range(256)) * 40  # 10 KiB
NAME = "train-images-idx3-ubyte.gz"
DIGEST = hashlib.sha256(DATA).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Behaviour by the first path segment: /slow, /flood, /trickle, /liar, /to-ftp, /to-good."""

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append(self.path)
        mode = self.path.split("/")[1]
        if mode.startswith("to-"):
            target = {"to-ftp": "ftp://127.0.0.1/x/", "to-file": "file:///etc/"}.get(
                mode, f"{srv.base}/good/"
            )
            self.send_response(302)
            self.send_header("Location", target + NAME)
            self.end_headers()
            return
        self.send_response(200)
        if mode in ("good", "slow"):
            self.send_header("Content-Length", str(len(DATA)))
        elif mode == "liar":  # promises more than the file, then closes
            self.send_header("Content-Length", str(len(DATA) + 1000))
        self.end_headers()
        if mode == "flood":  # no Content-Length, never-ending stream
            for _ in range(10000):
                self.wfile.write(DATA)
        elif mode == "trickle":
            for b in DATA:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.02)
        elif mode == "slow":
            for i in range(0, len(DATA), 1024):
                self.wfile.write(DATA[i : i + 1024])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self.wfile.write(DATA)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.requests = []
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_two_processes_share_one_download(server, tmp_path):
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        from nnx.datasets import fetch
        out = fetch({NAME!r}, {DIGEST!r}, [{server.base + "/slow/"!r}], {str(cache)!r},
                    size={len(DATA)}, timeout=10, deadline=30)
        print(out.read_bytes() == {DATA!r})
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [out.strip() for out, _ in results] == ["True", "True"], results
    assert server.requests == [f"/slow/{NAME}"]  # one download, the other process waited
    assert sorted(p.name for p in cache.iterdir()) == [NAME]


def test_a_stream_larger_than_the_expected_size_is_cut_off(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetError, match=f"more than the expected {len(DATA)} bytes"):
        fetch(NAME, DIGEST, [server.base + "/flood/"], tmp_path, size=len(DATA), timeout=5)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []  # the flood was not kept


def test_a_trickling_server_cannot_pass_the_deadline(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetError, match="too slow"):
        fetch(NAME, DIGEST, [server.base + "/trickle/"], tmp_path, timeout=2, deadline=1)
    assert time.monotonic() - start < 5  # deadline plus at most one timeout


@pytest.mark.parametrize(
    "hop, why",
    [("to-ftp", "only http and https URLs are followed"), ("to-file", "is not allowed")],
)
def test_redirects_leave_http_only_to_http(server, tmp_path, hop, why):
    with pytest.raises(DatasetError, match=why):
        fetch(NAME, DIGEST, [f"{server.base}/{hop}/"], tmp_path, timeout=5)
    assert fetch(NAME, DIGEST, [f"{server.base}/to-good/"], tmp_path).read_bytes() == DATA


def test_non_http_mirrors_are_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / NAME).write_bytes(DATA)
    with pytest.raises(DatasetError, match="not an http or https URL"):
        fetch(NAME, DIGEST, [f"file://{tmp_path / 'src'}/"], tmp_path / "c")


def test_the_checksum_decides_not_content_length(server, tmp_path):
    out = fetch(NAME, DIGEST, [server.base + "/liar/"], tmp_path, timeout=5)
    assert out.read_bytes() == DATA


def test_library_error_names_data_dir_and_nnx_data(tmp_path, monkeypatch, server):
    monkeypatch.setenv("NNX_DATA", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_idx_dataset("mnist", "test", mirrors=[server.base + "/missing/"])
    assert "--data-dir" in str(err.value) and "NNX_DATA" in str(err.value)


# -- IDX files under random damage -------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    gz=st.booleans(),
    shape=st.sampled_from([(7,), (3, 4, 5), (2, 28, 28)]),
)
def test_mutated_idx_file_reads_back_or_raises_dataset_error(data, gz, shape, tmp_path_factory):
    """Random byte changes and cuts: DatasetError, or an array of the header's shape, never more."""
    folder = tmp_path_factory.mktemp("idx")
    path = folder / ("x-idx" + (".gz" if gz else ""))
    write_idx(path, np.arange(np.prod(shape), dtype=np.uint8).reshape(shape))
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    path.write_bytes(bytes(blob[:cut]))
    try:
        x = read_idx(path)
    except DatasetError as err:
        assert path.name in str(err)
    else:
        assert x.size <= len(blob) * (1 if not gz else 1 << 10)  # no allocation beyond the data
        assert x.flags.writeable
