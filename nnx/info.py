"""``python -m nnx info`` (or ``nnx info``): what nnx sees on this machine, as plain text.

Versions (nnx, Python, NumPy, array-api-compat), every registered backend and
whether it runs here (and why not), the GPUs CuPy sees (name, memory, CUDA
runtime and driver versions), the NumPy backend's kernel table (numba loops or
not), the BLAS library with its kernel and threads
(through threadpoolctl when installed), and the data cache folder with the
data sets found there or in Debian's folder. Meant to be pasted into a bug
report; it only reads, and exits 0 on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from nnx.datasets import cache_dir
from nnx.datasets.mnist import DATASETS, SPLIT_FILES


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(name, version) of nnx, Python and the core dependencies."""
    py = f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"
    return [
        ("nnx", f"{nnx.__version__} ({Path(nnx.__file__).parent})"),
        ("Python", py),
        ("platform", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("NumPy", np.__version__),
        ("array-api-compat", _version("array-api-compat")),
    ]


def backend_lines() -> list[str]:
    """One line per registered backend: name, available or not (and why), where it comes from."""
    return nnx.backends().lines()


def gpu_lines() -> list[str]:
    """The CUDA devices CuPy sees, or why it sees none."""
    ok, why = nnx.backend.availability("cupy")
    if not ok:
        return [f"none seen by CuPy ({why})"]
    from nnx.backend import CupyBackend

    return CupyBackend.device_lines()


def kernel_lines() -> list[str]:
    """Which kernel table the NumPy backend uses (numba loops or NumPy only) and its threads."""
    from nnx.backend.jit import jit_status
    from nnx.backend.threads import get_num_threads

    on, why = jit_status()
    table = f"JitOps (numba loops, {why})" if on else f"NumpyOps ({why})"
    return [f"numpy backend: {table}", f"nnx kernel threads: {get_num_threads()}"]


def blas_lines() -> list[str]:
    """The BLAS (and OpenMP) libraries NumPy loaded, their kernel and thread counts."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        name = config.get("name", "unknown")
        return [
            f"{name} {config.get('version', '')} (install threadpoolctl for kernel and threads)"
        ]
    lines = []
    for pool in threadpool_info():
        extra = f", kernel {pool['architecture']}" if pool.get("architecture") else ""
        name = " ".join(filter(None, (pool["internal_api"], pool.get("version"))))
        lines.append(f"{name}{extra}, {pool['num_threads']} threads ({pool['filepath']})")
    return lines or ["no BLAS thread pool found"]


def data_lines() -> list[str]:
    """The cache folder and, per data set, where its four IDX files were found (if anywhere)."""
    env = os.environ.get("NNX_DATA")
    lines = [f"cache folder {cache_dir()} ({'NNX_DATA' if env else 'NNX_DATA not set'})"]
    for name, spec in DATASETS.items():
        found = [str(f) for f in (cache_dir(name), *map(Path, spec.system_dirs)) if _complete(f)]
        where = ", ".join(found) if found else "not present (downloaded on first use)"
        if not found and spec.hint:
            where = f"not present ({spec.hint}; or downloaded on first use)"
        lines.append(f"{name}: {where}")
    return lines


def _complete(folder: Path) -> bool:
    """True when ``folder`` holds all four IDX files, gzipped or not."""
    bases = [base for pair in SPLIT_FILES.values() for base in pair]
    return all((folder / b).is_file() or (folder / f"{b}.gz").is_file() for b in bases)


def report() -> str:
    """The whole report as text."""
    out = [f"{name}: {value}" for name, value in versions()]
    sections: list[tuple[str, Any]] = [
        ("Backends", backend_lines),
        ("GPUs", gpu_lines),
        ("Kernels", kernel_lines),
        ("BLAS", blas_lines),
        ("Data", data_lines),
    ]
    for title, lines in sections:
        out.append(f"\n{title}:")
        try:
            out += [f"  {line}" for line in lines()]
        except Exception as err:  # one broken probe must not hide the rest of the report
            out.append(f"  could not be read: {type(err).__name__}: {err}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """The ``nnx`` command line: ``nnx info``."""
    parser = argparse.ArgumentParser(prog="nnx", description="nnx command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, backends, GPUs, BLAS and data sets seen here")
    parser.parse_args(argv)
    print(report())
    return 0
