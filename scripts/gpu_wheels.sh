#!/usr/bin/env bash
# Run on a machine that reaches the package index, before scripts/gpu_check.sh:
# downloads into .whl/ (git-ignored) the exact wheels that the project's GPU machine
# (offline, CPython 3.12, manylinux x86_64, with CuPy, PyTorch CUDA, JAX, pytest,
# hypothesis, mpi4py already installed) lacks, so gpu_check.sh installs with --no-index.
#
#   bash scripts/gpu_wheels.sh [EXTRA_REQUIREMENT ...]   # e.g. cupy-cuda12x==14.2.0
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
# pinned: the versions the test suite is run with here
WHEELS=(
    "array-api-compat==1.16.0"
    "array-api-strict==2.6.1"
    "tqdm==4.70.1"
    "mpich==5.0.2"  # mpiexec and libmpi for the 1-rank NCCL step (mpi4py finds it)
    "$@"
)
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
mkdir -p "$DEST"
for spec in "${WHEELS[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$spec"
done
du -sh "$DEST"
ls -1 "$DEST"
