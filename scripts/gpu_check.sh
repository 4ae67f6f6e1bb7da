#!/usr/bin/env bash
# One-command check on a machine with an NVIDIA GPU (no internet needed beyond the
# package registries, or none at all when the packages are already there or in ./.whl).
#
#   scripts/gpu_check.sh [FASHION_MNIST_DIR]
#
# Installs nnx (with the CUDA extra if CuPy is missing) and its plugins, runs the whole
# test suite with cupy and torch-CUDA enabled, trains examples/xor.py and
# examples/mnist.py with --device cuda, runs the benchmarks' GPU rows and the 1-rank
# NCCL path of nnx.distributed (mpiexec -n 1), prints one
# summary table, and exits non-zero if anything failed. Budget: 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${1:-/usr/share/datasets/fashion-mnist}
LOG=${OUT:-/tmp}/gpu_check
mkdir -p "$LOG"
# the benchmarks find Fashion-MNIST through the nnx cache folder
export NNX_DATA="$LOG/nnx-data"
mkdir -p "$NNX_DATA/fashion-mnist"
cp "$DATA"/*-ubyte* "$NNX_DATA/fashion-mnist/" 2>/dev/null || echo "warning: no IDX files in $DATA"
declare -a NAMES STATUS SECONDS_TAKEN NOTES
failed=0
DEADLINE=$((SECONDS + 470))  # the whole check stays under 8 minutes

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS left=$((DEADLINE - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        NAMES+=("$name"); STATUS+=("FAIL(no time left)"); SECONDS_TAKEN+=(0); NOTES+=("-"); failed=1
        return
    fi
    echo "=== $name (at most ${limit}s): $*"
    timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    NAMES+=("$name")
    SECONDS_TAKEN+=($((SECONDS - start)))
    NOTES+=("$(grep -E 'passed|failed|accuracy|error' "$LOG/$name.log" | tail -n 1 | cut -c1-70)")
    if [ $rc -eq 0 ]; then STATUS+=("ok"); else STATUS+=("FAIL($rc)"); failed=1; tail -n 30 "$LOG/$name.log"; fi
}

extra=""
if ! $PY -c "import cupy" 2>/dev/null; then
    cuda=$(nvidia-smi 2>/dev/null | grep -oE 'CUDA Version: [0-9]+' | grep -oE '[0-9]+$')
    extra="[cuda${cuda:-12}]"
fi
find_links=""
[ -d .whl ] && find_links="--find-links .whl"
install="$PY -m pip install -q --no-build-isolation $find_links array-api-compat array-api-strict tqdm pytest \
  && $PY -m pip install -q --no-build-isolation --no-deps $find_links -e '.$extra' \
       -e backends/array_api_strict -e backends/torch -e backends/jax \
  && { [ -z '$extra' ] || $PY -m pip install -q --no-build-isolation $find_links -e '.$extra'; } \
  && $PY -c \"import nnx; [print(b) for b in nnx.backends()]; nnx.get_backend('cuda')\""
step install 90 bash -c "$install"
step tests 200 $PY -m pytest -q -x -p no:cacheprovider tests backends
step xor-cupy 30 $PY examples/xor.py --device cuda
step xor-torch-cuda 30 $PY examples/xor.py --device torch:cuda
step mnist-mlp-cupy 60 $PY examples/mnist.py --dataset fashion-mnist --data-dir "$DATA" \
    --model mlp --epochs 2 --device cuda --no-progress
step mnist-cnn-cupy 60 $PY examples/mnist.py --dataset fashion-mnist --data-dir "$DATA" \
    --model cnn --epochs 1 --device cuda --no-progress
# nnx.distributed: the 1-rank NCCL path, then the 2-rank equivalence tests on cupy
# (tests/test_distributed.py; with one GPU the 2-rank run stages through MPI)
mkdir -p "$LOG/ddp"
step ddp-nccl 90 bash -c "{ $PY -c 'import mpi4py' 2>/dev/null || $PY -m pip install -q $find_links mpi4py mpich; } \
  && mpiexec -n 1 $PY tests/mpi_worker.py train '$LOG/ddp' cupy nccl \
  && $PY -m pytest -q -rs -p no:cacheprovider tests/test_distributed.py -k 'cupy or nccl'"
step bench-gpu 90 $PY benchmarks/run.py --quick --cases mlp,cnn,xor

echo
echo "| step | result | seconds | last line |"
echo "|---|---|---|---|"
for i in "${!NAMES[@]}"; do
    echo "| ${NAMES[$i]} | ${STATUS[$i]} | ${SECONDS_TAKEN[$i]} | ${NOTES[$i]} |"
done
echo "logs: $LOG"
exit $failed
