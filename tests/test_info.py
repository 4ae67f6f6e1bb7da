"""``python -m nnx info`` runs, lists every registered backend and exits 0 without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import nnx
from nnx import info


def test_python_m_nnx_info_lists_every_backend_and_exits_0_without_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # as on a machine without a GPU
    result = subprocess.run(
        [sys.executable, "-m", "nnx", "info"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"nnx: {nnx.__version__}" in out and "NumPy: " in out and "array-api-compat: " in out
    lines = out.splitlines()
    # what a fresh process registers (this one may hold backends other tests registered)
    code = "import nnx; print(*(f'{r.name}={int(r.available)}' for r in nnx.backends()))"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    rows = dict(item.split("=") for item in fresh.stdout.split())
    assert {"numpy", "cupy"} <= set(rows)
    for name, ok in rows.items():
        line = next((x for x in lines if x.strip().startswith(f"{name} ")), None)
        assert line is not None, f"backend {name!r} missing from:\n{out}"
        assert ("unavailable" in line) == (ok == "0")
    for section in ("Backends:", "GPUs:", "BLAS:", "Data:"):
        assert section in lines
    assert "Traceback" not in result.stderr


def test_info_finds_a_data_set_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNX_DATA", str(tmp_path))
    folder = tmp_path / "mnist"
    folder.mkdir()
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
    for name in names:
        (folder / f"{name}.gz").write_bytes(b"")
    assert "mnist: not present" in "\n".join(info.data_lines())  # three of four files
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"")
    lines = info.data_lines()
    assert f"cache folder {tmp_path} (NNX_DATA)" in lines
    assert f"mnist: {folder}" in lines


def test_nnx_command_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        info.main([])
    assert exit_.value.code == 2
    assert "{info}" in capsys.readouterr().err  # the usage line names the command


def test_listing_backends_imports_no_heavy_library():
    # torch and jax take seconds to import; asking whether they are installed must not
    code = "import sys, nnx; nnx.backends(); print(sorted({'torch', 'jax'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_backends_prints_as_a_table_of_named_rows():
    rows = nnx.backends()
    assert isinstance(rows, list) and all(isinstance(r, nnx.backend.BackendInfo) for r in rows)
    lines = repr(rows).splitlines()
    assert [line.split()[0] for line in lines] == [r.name for r in rows]
    for row, line in zip(rows, lines, strict=True):
        assert ("unavailable: " + row.reason in line) if not row.available else "available" in line
        assert repr(row).startswith(f"<backend {row.name}: ")
