#!/usr/bin/env bash
# Run where the package index is reachable, before scripts/gpu_check.sh (docs/gpu.md):
#
# 1. downloads into .whl/ (git-ignored; emptied first) the wheels listed in
#    scripts/gpu_wheels.txt, what the project's GPU machine (offline, CPython 3.12,
#    manylinux x86_64) lacks, for CPython 3.12 and for this machine's Python (the
#    rehearsal, gpu_check.sh --rehearse, installs them here from the same folder);
# 2. copies Fashion-MNIST's four .gz files into .data/fashion-mnist (git-ignored) from
#    $FASHION_MNIST_SRC (default: /usr/share/datasets/fashion-mnist, Debian's package
#    dataset-fashion-mnist), or, without them there, downloads them into it with nnx's
#    checked download; then loads both splits from it, checking each file's SHA-256.
#
#   bash scripts/gpu_wheels.sh [--data-only] [EXTRA_REQUIREMENT ...]   # e.g. tqdm==4.67.1
#
# WHEEL_DIR and DATA_DIR name other folders (the tests use them); DATA_DIR ends in
# /fashion-mnist (nnx's cache layout: NNX_DATA is the folder above it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEEL_DIR=${WHEEL_DIR:-.whl}
DATA_DIR=${DATA_DIR:-.data/fashion-mnist}
SRC=${FASHION_MNIST_SRC:-/usr/share/datasets/fashion-mnist}
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
data_only=0
if [ "${1:-}" = "--data-only" ]; then
    data_only=1
    shift
fi

if [ $data_only = 0 ]; then
    mapfile -t WHEELS < <(sed -e 's/#.*//' scripts/gpu_wheels.txt | awk 'NF { print $1 }')
    WHEELS+=("$@")
    here=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    PLATFORMS=()
    for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
        PLATFORMS+=(--platform "${tag}_x86_64")
    done
    fresh=$(mktemp -d)   # outside the tree: a half-made folder is never carried
    trap 'rm -rf "$fresh"' EXIT
    for version in $(printf '%s\n' 3.12 "$here" | sort -u); do
        for spec in "${WHEELS[@]}"; do
            "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
                --implementation cp "${PLATFORMS[@]}" -d "$fresh" "$spec"
        done
    done
    rm -rf "$WHEEL_DIR"
    mkdir -p "$WHEEL_DIR"
    mv "$fresh"/*.whl "$WHEEL_DIR"/
    du -sh "$WHEEL_DIR"
    ls -1 "$WHEEL_DIR"
fi

[ "$(basename "$DATA_DIR")" = fashion-mnist ] || {
    echo "DATA_DIR must end in /fashion-mnist, not $DATA_DIR" >&2
    exit 2
}
mkdir -p "$DATA_DIR"
have=1
for f in "${FILES[@]}"; do [ -f "$SRC/$f" ] || have=0; done
download=False
if [ $have = 1 ]; then
    for f in "${FILES[@]}"; do cp "$SRC/$f" "$DATA_DIR/$f"; done
    echo "copied Fashion-MNIST from $SRC into $DATA_DIR"
else
    download=True
    echo "no Fashion-MNIST in $SRC: downloading it into $DATA_DIR"
fi
# nnx's own loader, on its cache folder only: the SHA-256 of each file, then the IDX contents
# (nnx from this tree; array-api-compat, which importing nnx needs, from its carried wheel
# when this Python lacks it: a pure-Python wheel imports as a zip)
path=$PWD
for w in "$WHEEL_DIR"/array_api_compat-*-py3-none-any.whl; do
    [ -f "$w" ] && path="$path:$(cd "$(dirname "$w")" && pwd)/$(basename "$w")"
done
NNX_DATA=$(cd "$(dirname "$DATA_DIR")" && pwd) PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" - "$download" <<'PYEOF'
import sys

try:
    from nnx.datasets.mnist import load_idx_dataset
except ImportError as err:
    sys.exit(f"checking the data needs nnx's requirements in this Python ({err}); set PYTHON")

for split in ("train", "test"):
    x, y = load_idx_dataset("fashion-mnist", split, download=sys.argv[1] == "True", system_dirs=())
    print(f"fashion-mnist {split}: {x.shape[0]} images, checked")
PYEOF
du -sh "$DATA_DIR"
