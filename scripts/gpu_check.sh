#!/usr/bin/env bash
# One-command check on a machine with an NVIDIA GPU, offline (docs/gpu.md):
#
#   bash scripts/gpu_wheels.sh                    # where the package index is reachable:
#                                                 # fills .whl/ and .data/fashion-mnist
#   bash scripts/gpu_check.sh --rehearse          # here, without a GPU (see below)
#   bash scripts/gpu_check.sh [FASHION_MNIST_DIR] # on the GPU machine, carrying .whl and .data
#   bash scripts/gpu_check.sh --plan [--rehearse] # print the steps and the budget; run nothing
#
# On the GPU machine it installs only what the image lacks, from .whl/ (--no-index, nothing
# else: the list is scripts/gpu_wheels.txt) and nnx with its plugins from the working tree,
# probes what is installed and the CuPy backend, runs the whole test suite (cupy and
# torch:cuda enabled; pytest-xdist with --dist loadscope, so each module's fixtures, the
# MPI jobs among them, run once; no -x: every failure is seen), trains examples/xor.py and
# examples/mnist.py on the GPU, runs nnx.distributed's NCCL path on one rank
# (mpiexec -n 1), times the benchmarks' GPU rows, prints one table (step, device, result,
# seconds, limit) and the cupy / PyTorch CUDA ratios, and exits non-zero if any step failed.
# Fashion-MNIST comes from FASHION_MNIST_DIR, by default .data/fashion-mnist (carried with
# the tree); the benchmarks read it through NNX_DATA.
#
# --rehearse, on a machine without a GPU: makes a fresh virtual environment outside the
# tree, installs into it from the package registries what the GPU image already has (the
# "image" step), then runs the same steps as the GPU run where they need no CUDA (the same
# install command from .whl/, the probe, the test suite, the examples and the MPI step on
# numpy), reports the CUDA steps as "needs a GPU", checks what a GPU run would carry
# (git-tracked tree + untracked files git does not ignore + .whl + .data, under 64 MiB),
# and exits 0 only if every step it ran passed.
#
# Budget: each step runs under `timeout -k GRACE LIMIT`, so it may take LIMIT + GRACE
# seconds (TERM at LIMIT, KILL GRACE seconds later). The GPU run's limits plus one grace
# per step must add up to less than its budget (480 s, 8 minutes); the script checks that
# before it starts (a slow step cannot starve the ones after it), and the rehearsal checks
# its own limits (measured on a 2-core machine) against its own budget.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=gpu
PLAN=0
while [ $# -gt 0 ]; do
    case $1 in
        --rehearse) MODE=rehearse ;;
        --plan) PLAN=1 ;;
        --) shift; break ;;
        -*) echo "unknown option $1 (use --rehearse, --plan or a folder)" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
DATA=$(realpath -m "${1:-$ROOT/.data/fashion-mnist}")
GRACE=3
BUDGET_GPU=${GPU_CHECK_BUDGET:-480}  # (GPU_CHECK_BUDGET: the tests try a smaller one)
BUDGET_REHEARSE=${GPU_CHECK_BUDGET:-3600}
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
CARRY_LIMIT=$((64 * 1024 * 1024))
# what the GPU image already has, from the package registries (the rehearsal's "image" step)
IMAGE_PACKAGES="numpy torch==2.13.0 jax jaxlib pytest pytest-xdist pytest-timeout hypothesis
    mpi4py numba onnx onnxruntime matplotlib tqdm threadpoolctl filelock setuptools"
# what it lacks: scripts/gpu_wheels.txt (the install step checks that the image step left them out)
IMAGE_LACKS="array-api-compat array-api-strict mpich cupy-cuda12x cupy-cuda13x"
LOAD_MPI="import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI"

# JAX takes most of a GPU's free memory in each process unless told not to: with 8 test
# workers and MPI ranks, CuPy and torch would then run out of memory
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

if [ $MODE = gpu ]; then
    PY=${PYTHON:-python3}
    LOG=${OUT:-/tmp}/gpu_check
    BUDGET=$BUDGET_GPU
    WORKERS=8   # 16 cores: 8 workers x 2 BLAS threads
else
    WORK=${TMPDIR:-/tmp}/nnx-gpu-rehearse
    VENV=$WORK/venv
    HOST_PY=$(command -v "${PYTHON:-python3}")
    PY=$VENV/bin/python
    LOG=$WORK/log
    BUDGET=$BUDGET_REHEARSE
    # one test worker per core, 1 BLAS thread each (the kit's rounding bounds hold for any
    # summation order, so the thread count does not change what passes)
    WORKERS=$(nproc 2>/dev/null || echo 2)
    [ "$WORKERS" -gt 8 ] && WORKERS=8
    # every other step: 1 BLAS thread (on the shared 2-core machine, 2 threads ran the MLP
    # example's 2 epochs in 94 s instead of 17 s); the test step sets its own
    export OMP_NUM_THREADS=1
    # as on the GPU machine, nothing of this shell's own environments: no activated venv and
    # no mpiexec on PATH but the one the script puts there
    clean=""
    IFS=: read -ra parts <<<"$PATH"
    for d in "${parts[@]}"; do
        [ -n "${VIRTUAL_ENV:-}" ] && [ "$d" = "$VIRTUAL_ENV/bin" ] && continue
        [ -x "$d/mpiexec" ] && continue
        clean="${clean:+$clean:}$d"
    done
    PATH=$clean
    unset VIRTUAL_ENV PYTHONPATH
fi
# BLAS threads per test worker: 2 on the GPU machine's 16 cores, 1 in the rehearsal
if [ $MODE = gpu ]; then THREADS=2; else THREADS=1; fi
export NNX_DATA="$LOG/nnx-data"   # the benchmarks find Fashion-MNIST in nnx's cache folder

# -- the steps, once for both runs ------------------------------------------------------------
# name        GPU device  rehearsal device  GPU limit  rehearsal limit  function [arguments]
# (a limit of 0: not run; on the GPU run, for a rehearsal-only step; in the rehearsal, a step
# that needs a GPU)
STEPS="
image         -           -                 0          600    do_image
carry         -           -                 0          20     do_carry
install       -           -                 25         30     do_install
installed     -           -                 15         30     do_installed
cupy-probe    cuda        -                 15         0      do_cupy_probe
tests         -           -                 200        2100   do_tests
xor           cuda        cpu               10         15     do_xor
xor-torch     torch:cuda  -                 12         0      do_xor
mnist-mlp     cuda        cpu               25         60     do_mnist mlp 2
mnist-cnn     cuda        cpu               30         400    do_mnist cnn 1
ddp           cupy        numpy             20         30     do_ddp
bench-gpu     -           -                 70         0      do_bench
ratios        -           -                 5          0      do_ratios
"

x() {  # run a command, or (--plan) print it
    if [ "$PLAN" = 1 ]; then
        printf '    $'
        printf ' %q' "$@"
        echo
    else
        "$@"
    fi
}

req_for() {  # the requirements of scripts/gpu_wheels.txt installed when $1
    sed -e 's/#.*//' "$ROOT/scripts/gpu_wheels.txt" | awk -v when="$1" 'NF && $2 == when { print $1 }'
}

pip_whl() {  # the one install command from .whl/, the same on the GPU and in the rehearsal
    # .whl/ only: no index, and none of this machine's pip settings (its find-links)
    x env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null "$PY" -m pip install -q --no-index --find-links "$ROOT/.whl" "$@"
}

do_image() {  # rehearsal only: a fresh environment with what the GPU image has
    set -e
    x rm -rf "$VENV"
    x "$HOST_PY" -m venv "$VENV"
    # shellcheck disable=SC2086
    x "$PY" -m pip install -q $IMAGE_PACKAGES
    [ "$PLAN" = 1 ] && return 0
    for p in $IMAGE_LACKS; do
        if "$PY" -m pip show -q "$p" >/dev/null 2>&1; then
            echo "$p came with the image's packages: the GPU image has no $p"
            exit 1
        fi
    done
    "$PY" -m pip list --format=freeze | tr '\n' ' '
    echo
}

do_carry() {  # rehearsal only: what a GPU run reads travels with it, under 64 MiB
    set -e
    [ "$PLAN" = 1 ] && { echo "    (sizes of the tree, .whl and .data; wheels for CPython 3.12)"; return 0; }
    case "$DATA/" in
        "$ROOT"/*) ;;
        *) echo "Fashion-MNIST is read from $DATA, outside the tree: a GPU run carries only the tree, .whl and .data (run scripts/gpu_wheels.sh)"; exit 1 ;;
    esac
    for req in $(sed -e 's/#.*//' "$ROOT/scripts/gpu_wheels.txt" | awk 'NF { print $1 }'); do
        name=$(echo "${req%%==*}" | tr '-' '_')
        wheel=""
        for w in "$ROOT/.whl/$name"-*.whl; do
            case $(basename "$w") in *-py3-* | *-py2.py3-* | *-cp312-*) wheel=$(basename "$w") ;; esac
        done
        [ -n "$wheel" ] || { echo "no wheel for $req that CPython 3.12 installs in .whl/ (run scripts/gpu_wheels.sh)"; exit 1; }
        echo "wheel for 3.12: $wheel"
    done
    size() { xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
    tracked=$(git -C "$ROOT" ls-files -z | (cd "$ROOT" && size))
    untracked=$(git -C "$ROOT" ls-files -z --others --exclude-standard | (cd "$ROOT" && size))
    whl=$(du -sb "$ROOT/.whl" | cut -f1)
    data=$(du -sb "$ROOT/.data" | cut -f1)
    total=$((tracked + untracked + whl + data))
    mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
    echo "carried: tree $(mib "$tracked") + untracked $(mib "$untracked") + .whl $(mib "$whl") + .data $(mib "$data") = $(mib "$total") (limit 64 MiB)"
    [ "$total" -lt "$CARRY_LIMIT" ] || { echo "over the 64 MiB a GPU run may carry"; exit 1; }
}

do_install() {  # only what the image lacks, from .whl/; then nnx and its plugins
    set -e
    # shellcheck disable=SC2046
    pip_whl $(req_for always)
    [ "$PLAN" = 1 ] && echo "    (when the interpreter has no setuptools:)"
    if [ "$PLAN" = 1 ] || ! "$PY" -c 'import setuptools' 2>/dev/null; then
        # shellcheck disable=SC2046
        pip_whl $(req_for no-setuptools)
    fi
    # `import mpi4py` works without an MPI library: only loading mpi4py.MPI shows one is missing
    [ "$PLAN" = 1 ] && echo "    (when \`from mpi4py import MPI\` finds no MPI library:)"
    if [ "$PLAN" = 1 ] || ! "$PY" -c "$LOAD_MPI" 2>/dev/null; then
        # shellcheck disable=SC2046
        pip_whl $(req_for no-mpi)
    fi
    x "$PY" -c "$LOAD_MPI; print(MPI.Get_library_version().splitlines()[0])"
    pip_whl --no-deps --no-build-isolation -e "$ROOT" -e "$ROOT/backends/array_api_strict" \
        -e "$ROOT/backends/torch" -e "$ROOT/backends/jax"
}

do_installed() {  # a probe of what is installed, what the PATH finds, and the data
    x "$PY" - <<'PYEOF'
import importlib
import os
import shutil
import sys

gpu = os.environ["MODE"] == "gpu"
bad = []
names = ["numpy", "array_api_compat", "array_api_strict", "torch", "jax", "mpi4py", "pytest",
         "xdist", "pytest_timeout", "hypothesis", "numba", "onnx", "onnxruntime", "threadpoolctl",
         "tqdm", "nnx", "nnx_array_api_strict", "nnx_torch", "nnx_jax"] + (["cupy"] if gpu else [])
for name in names:
    try:
        print(f"{name} {getattr(importlib.import_module(name), '__version__', '')}")
    except Exception as err:
        bad.append(f"{name}: {err}")
try:
    import mpi4py

    mpi4py.rc.initialize = False
    from mpi4py import MPI

    print("MPI library:", MPI.Get_library_version().splitlines()[0])
except Exception as err:
    bad.append(f"MPI library: {err}")
print("python:", sys.executable, "| mpiexec on PATH:", shutil.which("mpiexec"))
if shutil.which("mpiexec") is None:
    bad.append("no mpiexec on PATH (the ddp step runs it)")
if os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") != "false":
    bad.append("XLA_PYTHON_CLIENT_PREALLOCATE is not false: JAX would take the GPU in each process")
try:  # as the benchmarks find it: nnx's cache folder (NNX_DATA) only, no system folder
    from nnx.datasets.mnist import load_idx_dataset

    x, _ = load_idx_dataset("fashion-mnist", "test", download=False, system_dirs=())
    print(f"Fashion-MNIST through NNX_DATA={os.environ['NNX_DATA']}: {x.shape[0]} test images")
except Exception as err:
    bad.append(f"Fashion-MNIST through NNX_DATA: {err}")
import nnx

print(nnx.backends())
if bad:
    sys.exit("missing:\n  " + "\n  ".join(bad))
print("everything the check needs is installed")
PYEOF
}

do_cupy_probe() {
    x "$PY" -c "
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
}

do_tests() {  # a hung test fails with its traceback (pytest-timeout) before the step's limit
    x env OMP_NUM_THREADS="$THREADS" "$PY" -m pytest -q -p no:cacheprovider -n "$WORKERS" \
        --dist loadscope --durations=25 --timeout="$TEST_TIMEOUT" tests backends
}

do_xor() {
    x "$PY" examples/xor.py --device "$1"
}

do_mnist() {  # DEVICE MODEL EPOCHS
    x "$PY" examples/mnist.py --dataset fashion-mnist --data-dir "$DATA" --model "$2" \
        --epochs "$3" --device "$1" --no-progress
}

do_ddp() {  # one rank: NCCL for cupy, MPI (host staging) otherwise
    set -e
    local transport=mpi
    [ "$1" = cupy ] && transport=nccl
    x rm -rf "$LOG/ddp"
    x mkdir -p "$LOG/ddp"
    x mpiexec -n 1 "$PY" tests/mpi_worker.py train "$LOG/ddp" "$1" "$transport"
}

do_bench() {
    x "$PY" benchmarks/run.py --quick --cases mlp,cnn,xor --json "$LOG/bench.json"
}

do_ratios() {  # cupy against PyTorch CUDA, from the benchmark's JSON (a missing row fails)
    x "$PY" - "$LOG/bench.json" <<'PYEOF'
import json
import sys

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
        ratio = n.get("x_torch", n["median_s"] / t["median_s"])
        print(f"| {title} | {n['median_s']:.3f} s | {t['median_s']:.3f} s | {ratio:.2f}x |")
    else:
        bad = 1
        skipped = (n.get("skipped", n.get("median_s", "?")), t.get("skipped", t.get("median_s", "?")))
        print(f"| {title} | {skipped[0]} | {skipped[1]} | - |")
sys.exit(bad)
PYEOF
}

# -- the plan: which steps run, with what limit, and whether the limits fit the budget ---------
mapfile -t ROWS < <(echo "$STEPS" | sed -e '/^[[:space:]]*$/d')
planned=0
for row in "${ROWS[@]}"; do
    read -r name gdev rdev glimit rlimit fn args <<<"$row"
    limit=$glimit
    [ $MODE = rehearse ] && limit=$rlimit
    [ "$name" = tests ] && TEST_TIMEOUT=$((limit - 20))
    [ "$limit" -gt 0 ] && planned=$((planned + limit + GRACE))
done
if [ "$PLAN" = 1 ]; then
    echo "mode: $MODE"
    echo "python: $PY"
    echo "data: $DATA"
    echo "NNX_DATA: $NNX_DATA"
    echo "XLA_PYTHON_CLIENT_PREALLOCATE: $XLA_PYTHON_CLIENT_PREALLOCATE"
fi
echo "budget: limits + ${GRACE}s kill grace per step = ${planned}s of ${BUDGET}s ($MODE)"
if [ "$planned" -ge "$BUDGET" ]; then
    echo "the steps' limits and kill graces (${planned}s) do not fit the ${BUDGET}s budget" >&2
    exit 2
fi

export ROOT MODE PLAN PY DATA LOG NNX_DATA WORKERS THREADS TEST_TIMEOUT LOAD_MPI
export IMAGE_PACKAGES IMAGE_LACKS CARRY_LIMIT
[ $MODE = rehearse ] && export VENV HOST_PY
export -f x req_for pip_whl do_image do_carry do_install do_installed do_cupy_probe do_tests \
    do_xor do_mnist do_ddp do_bench do_ratios

path_set=0
set_path() {  # the interpreter's bin folder and pip's scripts folder (mpiexec is there) on PATH
    local bin scripts
    bin=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
    scripts=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    PATH="$bin:$scripts:$PATH"
    export PATH
    path_set=1
    [ "$PLAN" = 1 ] && echo "PATH starts: $(echo "$PATH" | cut -d: -f1-2)"
}

if [ "$PLAN" = 1 ]; then
    [ $MODE = gpu ] && set_path
    for row in "${ROWS[@]}"; do
        read -r name gdev rdev glimit rlimit fn args <<<"$row"
        dev=$gdev limit=$glimit
        [ $MODE = rehearse ] && dev=$rdev limit=$rlimit
        if [ "$limit" = 0 ]; then
            [ $MODE = rehearse ] && [ "$glimit" -gt 0 ] && echo "step $name: needs a GPU"
            continue
        fi
        echo "step $name: device $dev, limit ${limit}s + ${GRACE}s"
        # shellcheck disable=SC2086
        ("$fn" "$dev" $args)
    done
    exit 0
fi

# -- the run ----------------------------------------------------------------------------------
rm -rf "$LOG"
mkdir -p "$LOG" "$NNX_DATA/fashion-mnist"
for f in $FILES; do
    if [ ! -f "$DATA/$f" ]; then
        echo "no $f in $DATA: run scripts/gpu_wheels.sh first (it fills .data/fashion-mnist), or name the folder that holds the four .gz files" >&2
        exit 2
    fi
    cp "$DATA/$f" "$NNX_DATA/fashion-mnist/"
done

declare -a NAMES DEVICES STATUS SECONDS_TAKEN LIMITS NOTES
failed=0
record() {  # NAME DEVICE RESULT SECONDS LIMIT NOTE
    NAMES+=("$1")
    DEVICES+=("$2")
    STATUS+=("$3")
    SECONDS_TAKEN+=("$4")
    LIMITS+=("$5")
    NOTES+=("$6")
}

for row in "${ROWS[@]}"; do
    read -r name gdev rdev glimit rlimit fn args <<<"$row"
    dev=$gdev limit=$glimit
    [ $MODE = rehearse ] && dev=$rdev limit=$rlimit
    if [ "$limit" = 0 ]; then
        [ $MODE = rehearse ] && [ "$glimit" -gt 0 ] && record "$name" "$gdev" "needs a GPU" - "$glimit" ""
        continue
    fi
    if [ $path_set = 0 ] && [ "$name" != image ]; then
        set_path
    fi
    echo "=== $name ($dev, at most ${limit}s + ${GRACE}s)"
    start=$SECONDS
    # shellcheck disable=SC2086
    timeout -k "$GRACE" "$limit" bash -c '"$@"' _ "$fn" "$dev" $args </dev/null >"$LOG/$name.log" 2>&1
    rc=$?
    note=$(grep -aE 'passed|failed|accuracy|error|Error|carried|everything|missing' "$LOG/$name.log" \
        | tail -n 1 | cut -c1-90 | tr '|' '/')
    if [ $rc -eq 0 ]; then
        result=ok
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        result="FAIL(timeout)"
    else
        result="FAIL($rc)"
    fi
    record "$name" "$dev" "$result" $((SECONDS - start)) "$limit" "$note"
    if [ $rc -ne 0 ]; then
        failed=1
        tail -n 30 "$LOG/$name.log"
        if [ "$name" = image ]; then
            echo "the rehearsal's environment could not be made: no other step can run"
            break
        fi
    fi
done

echo
echo "| step | device | result | seconds | limit | last line |"
echo "|---|---|---|---:|---:|---|"
for i in "${!NAMES[@]}"; do
    echo "| ${NAMES[$i]} | ${DEVICES[$i]} | ${STATUS[$i]} | ${SECONDS_TAKEN[$i]} | ${LIMITS[$i]} | ${NOTES[$i]} |"
done
echo
[ $MODE = gpu ] && [ -f "$LOG/ratios.log" ] && grep -a '^|' "$LOG/ratios.log"
echo "logs: $LOG (total ${SECONDS}s of ${BUDGET}s, $MODE)"
[ "$SECONDS" -le "$BUDGET" ] || { echo "over budget"; failed=1; }
exit $failed
