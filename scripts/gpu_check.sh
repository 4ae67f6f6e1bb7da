#!/usr/bin/env bash
# One-command check on a machine with an NVIDIA GPU, offline:
#
#   bash scripts/gpu_wheels.sh      # once, on a machine that reaches the package index
#   bash scripts/gpu_check.sh [FASHION_MNIST_DIR]
#
# Installs nnx and its plugins from the working tree and the wheels in .whl/ (never from
# the network: --no-index), probes the CuPy backend, runs the whole test suite with cupy
# and torch CUDA enabled (no -x: every failure is seen), trains examples/xor.py and
# examples/mnist.py with --device cuda, runs nnx.distributed's NCCL path on one rank
# (mpiexec -n 1), times the benchmarks' GPU rows after a warm-up,
# prints one table (step, result, seconds) and the cupy / PyTorch CUDA ratios, and exits
# non-zero if any step failed. Each step has its own limit; the limits add up to less
# than the whole budget (8 minutes), so a slow step cannot starve the ones after it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${1:-/usr/share/datasets/fashion-mnist}
LOG=${OUT:-/tmp}/gpu_check
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
# the benchmarks find Fashion-MNIST through the nnx cache folder
export NNX_DATA="$LOG/nnx-data"
mkdir -p "$NNX_DATA/fashion-mnist"
cp "$DATA"/*-ubyte* "$NNX_DATA/fashion-mnist/" 2>/dev/null || echo "warning: no IDX files in $DATA"
declare -a NAMES STATUS SECONDS_TAKEN NOTES
failed=0
BUDGET=480

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "=== $name (at most ${limit}s): $*"
    timeout -k 5 "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    NAMES+=("$name")
    SECONDS_TAKEN+=($((SECONDS - start)))
    NOTES+=("$(grep -aE 'passed|failed|accuracy|error|Error' "$LOG/$name.log" | tail -n 1 | cut -c1-80 | tr '|' '/')")
    if [ $rc -eq 0 ]; then
        STATUS+=("ok")
    else
        [ $rc -eq 124 ] && STATUS+=("FAIL(timeout)") || STATUS+=("FAIL($rc)")
        failed=1
        tail -n 30 "$LOG/$name.log"
    fi
}

wheels=""
[ -d .whl ] && wheels="--find-links .whl"
# only what is missing: the GPU machine already has CuPy, torch, jax, pytest, hypothesis
install="set -e
$PY -m pip install -q --no-index $wheels --no-build-isolation array-api-compat array-api-strict tqdm
$PY -c 'import mpi4py' 2>/dev/null && { $PY -m pip install -q --no-index $wheels mpich || echo 'no mpich wheel: MPI steps may fail'; }
$PY -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    -e backends/array_api_strict -e backends/torch -e backends/jax
$PY -c 'import nnx; [print(b) for b in nnx.backends()]'"

# limits: 40 + 15 + 200 + 15 + 15 + 35 + 40 + 25 + 80 = 465 s < BUDGET
step install 40 bash -c "$install"
step cupy-probe 15 $PY -c "
import nnx
ok, why = nnx.backend.availability('cuda')
assert ok, why
b = nnx.get_backend('cuda:0')
assert all(nnx.get_backend(s) is b for s in ('cupy', 'cuda', 'gpu', 'cupy:0')), 'one backend per GPU'
with nnx.using(b):
    layer = nnx.Linear(2, 3)
y = layer(nnx.asarray([[1.0, -2.0]], device=b))
g = b.generator
state = g.get_state()
u = nnx.to_numpy(g.uniform((3,)))
g.set_state(state)
assert (nnx.to_numpy(g.uniform((3,))) == u).all(), 'generator state does not replay'
buf = b.asarray([1.0, 2.0])
b.ops.momentum_update(buf, b.asarray([1.0, 1.0]), b.asarray(0.5))  # the fused CuPy kernel
assert nnx.to_numpy(buf).tolist() == [1.5, 2.0], nnx.to_numpy(buf)
print(b, type(b.ops).__name__, y.device, nnx.to_numpy(y))
"
# pytest-xdist (on the GPU image) spreads the suite over the machine's cores
parallel=""
$PY -c "import xdist" 2>/dev/null && parallel="-n 8"
step tests 200 env OMP_NUM_THREADS=2 $PY -m pytest -q -p no:cacheprovider $parallel tests backends
step xor-cupy 15 $PY examples/xor.py --device cuda
step xor-torch-cuda 15 $PY examples/xor.py --device torch:cuda
step mnist-mlp-cupy 35 $PY examples/mnist.py --dataset fashion-mnist --data-dir "$DATA" \
    --model mlp --epochs 2 --device cuda --no-progress
step mnist-cnn-cupy 40 $PY examples/mnist.py --dataset fashion-mnist --data-dir "$DATA" \
    --model cnn --epochs 1 --device cuda --no-progress
# nnx.distributed: the NCCL path on one rank (the suite above ran the cupy equivalence tests)
mkdir -p "$LOG/ddp"
step ddp-nccl 25 mpiexec -n 1 $PY tests/mpi_worker.py train "$LOG/ddp" cupy nccl
step bench-gpu 80 $PY benchmarks/run.py --quick --cases mlp,cnn,xor --json "$LOG/bench.json"

echo
echo "| step | result | seconds | last line |"
echo "|---|---|---:|---|"
for i in "${!NAMES[@]}"; do
    echo "| ${NAMES[$i]} | ${STATUS[$i]} | ${SECONDS_TAKEN[$i]} | ${NOTES[$i]} |"
done
echo
# cupy against PyTorch CUDA, from the benchmark's JSON (a missing row is a failure)
$PY - "$LOG/bench.json" <<'PYEOF' || failed=1
import json, sys
try:
    cases = json.load(open(sys.argv[1]))["cases"]
except (OSError, ValueError, KeyError) as err:
    sys.exit(f"no benchmark results: {err}")
titles = {"mlp": "MLP epoch", "cnn": "CNN steps", "xor": "XOR"}
print("| case | nnx (cupy) | PyTorch CUDA | nnx / PyTorch CUDA |")
print("|---|---:|---:|---:|")
bad = 0
for case, title in titles.items():
    rows = cases.get(case, {})
    n, t = rows.get("nnx-gpu", {}), rows.get("torch-gpu", {})
    if "median_s" in n and "median_s" in t:
        print(f"| {title} | {n['median_s']:.3f} s | {t['median_s']:.3f} s | {n.get('x_torch', n['median_s'] / t['median_s']):.2f}x |")
    else:
        bad = 1
        print(f"| {title} | {n.get('skipped', n.get('median_s', '?'))} | {t.get('skipped', t.get('median_s', '?'))} | - |")
sys.exit(bad)
PYEOF
echo "logs: $LOG (total ${SECONDS}s of ${BUDGET}s)"
[ "$SECONDS" -le "$BUDGET" ] || { echo "over budget"; failed=1; }
exit $failed
