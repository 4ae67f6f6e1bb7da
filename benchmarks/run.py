"""nnx against PyTorch, a bare-NumPy loop and the matmul-only floor, in one run.

    python benchmarks/run.py            # the full benchmark (about 3-5 minutes)
    python benchmarks/run.py --quick    # a smoke run of a few seconds
    python benchmarks/run.py --rounds 11 --cases mlp,xor
    python benchmarks/run.py --cases ddp    # data-parallel MLP epoch over MPI (~2 minutes)
    python benchmarks/run.py --cases scale   # only the growth table (about 1-2 minutes)

Cases: (a) one epoch of an MLP 784-256-128-10 at batch 128 on Fashion-MNIST
train, float32; (b) a LeNet-like CNN, batch 64, 200 steps; (c) XOR 2-8-1, full
batch, 5000 Adam steps (dispatch overhead); (d) the peak memory of (a), each
implementation in a fresh subprocess; (e) ``ddp``, not in the default list
because it needs nnx[mpi] and about two minutes: the MLP epoch on 2 MPI ranks x 1
BLAS thread against 1 process x 1 and x 2 threads (see benchmarks/ddp.py).  Every implementation of a case runs
once per round, in a rotated order, in this one process; the table shows
medians and the median of the per-round ratios.  With a CUDA device, nnx on
CuPy is timed against PyTorch on CUDA (synchronising before reading clocks).
``--cases scale`` (not in the default list) adds the growth table of
:mod:`scale`: one step of the MLP and the CNN at growing batch and width.

Prints a markdown table and writes JSON (default benchmarks/results/latest.json).
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import os
import sys

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on some machines for older
# OpenBLAS builds; they slow a current numpy.  The benchmark unsets both, for
# its own process only (re-executing itself before numpy loads).
_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if (
    __name__ == "__main__"
    and "--keep-blas-env" not in sys.argv
    and any(v in os.environ for v in _BLAS_VARS)
):
    env = dict(os.environ)
    env["NNX_BENCH_UNSET"] = ";".join(f"{v}={env.pop(v)}" for v in _BLAS_VARS if v in env)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
import references as R  # noqa: E402

from nnx.atomic import atomic_write  # noqa: E402

DEFAULT_JSON = HERE / "results" / "latest.json"
CASES = ("mlp", "cnn", "xor")
TITLES = {
    "mlp": "MLP epoch ({} images)",
    "cnn": "CNN {} steps",
    "xor": "XOR {} steps",
    "mem": "MLP peak memory",
}
MIN_ROUNDS = 7
DDP_ROUNDS = 5  # each ddp round starts fresh processes (and MPI); runs here vary by ~10%
SETTLE_S = 0.2


# -- implementations --------------------------------------------------------------------


@dataclasses.dataclass
class Impl:
    """One row: an implementation of a case on a device, or why it is skipped."""

    case: str
    key: str  # "nnx", "torch", "bare", "floor", "nnx-gpu", "torch-gpu"
    label: str
    factory: Any = None
    skip: str = ""
    runner: Any = None
    times: list[float] = dataclasses.field(default_factory=list)
    accuracies: list[float] = dataclasses.field(default_factory=list)


def implementations(case: str, gpu: bool) -> list[Impl]:
    """The rows of one case, in table order."""
    import nnx_cases as N

    nnx_cls = {"mlp": N.NnxMLP, "cnn": N.NnxCNN, "xor": N.NnxXOR}[case]
    torch_cls = {"mlp": R.TorchMLP, "cnn": R.TorchCNN, "xor": R.TorchXOR}[case]
    bare_cls = {"mlp": R.BareMLP, "cnn": R.BareCNN, "xor": R.BareXOR}[case]
    floor_cls = {"mlp": R.FloorMLP, "cnn": R.FloorCNN, "xor": R.FloorXOR}[case]
    tdev, ndev = R.torch_devices(), N.nnx_devices()
    rows = [
        Impl(case, "nnx", "nnx (numpy)", lambda d, c: nnx_cls(d, c, "cpu")),
        Impl(case, "torch", "PyTorch CPU", lambda d, c: torch_cls(d, c, "cpu"), tdev["cpu"]),
        Impl(case, "bare", "bare NumPy", bare_cls),
        Impl(case, "floor", "matmul floor", floor_cls),
    ]
    off = "" if gpu else "skipped: --no-gpu"
    nnx_gpu_skip = off or ndev["cuda"]
    rows += [
        Impl(case, "nnx-gpu", "nnx (cupy)", lambda d, c: nnx_cls(d, c, "cuda"), nnx_gpu_skip),
        Impl(
            case,
            "torch-gpu",
            "PyTorch CUDA",
            lambda d, c: torch_cls(d, c, "cuda"),
            off or tdev["cuda"],
        ),
    ]
    return rows


# -- timing -----------------------------------------------------------------------------


def time_once(impl: Impl, quick: bool) -> float | None:
    """prepare (untimed), run (timed, synchronised), evaluate and self-check (untimed).

    A failure of nnx or PyTorch marks the row failed (None); a bare reference that
    fails its self-check stops the whole run.
    """
    try:
        return _time_once(impl, quick)
    except R.SelfCheckError:
        raise
    except Exception as err:
        if impl.key in ("bare", "floor"):
            raise
        impl.skip = f"failed: {type(err).__name__}: {err}"
        impl.times.clear()
        return None


def _time_once(impl: Impl, quick: bool) -> float:
    r = impl.runner
    settle = 0.0 if quick else SETTLE_S
    r.prepare()
    gc.collect()
    r.sync()
    time.sleep(settle)  # let the last runner's spinning BLAS/OpenMP threads go idle
    t0 = time.perf_counter()
    r.run()
    r.sync()
    elapsed = time.perf_counter() - t0
    acc = r.evaluate()
    if acc is not None:
        impl.accuracies.append(acc)
        if impl.key == "bare":
            R.check(impl.case, quick, acc, "bare NumPy reference")
    return elapsed


def run_rounds(
    rows: list[Impl], data: R.Data, cfg: R.Config, args: argparse.Namespace, log
) -> dict[str, Any]:
    """A warm-up round, then alternating rounds until ``args.rounds`` (within the budget)."""
    live = [i for i in rows if not i.skip]
    for impl in live:
        try:
            impl.runner = impl.factory(data, cfg)
        except Exception as err:  # an available device that fails to start is a failure
            impl.skip = f"failed: {type(err).__name__}: {err}"
    live = [i for i in live if not i.skip]
    gc.collect()
    gc.freeze()  # torch's many long-lived objects would make every gc.collect() slow
    start = time.perf_counter()
    # even a smoke run warms up: first calls compile GPU kernels and fault in memory
    log("warm-up round (not counted)")
    for impl in live:
        time_once(impl, args.quick)
        impl.accuracies.clear()
    done, stopped_early = 0, ""
    while done < args.rounds:
        t_round = time.perf_counter()
        for case in args.cases:
            order = [i for i in live if i.case == case]
            k = done % max(len(order), 1)
            for impl in order[k:] + order[:k]:  # rotate: nobody always follows the same one
                if not impl.skip:
                    elapsed = time_once(impl, args.quick)
                    if elapsed is not None:
                        impl.times.append(elapsed)
        done += 1
        per_round = time.perf_counter() - t_round
        elapsed = time.perf_counter() - start
        log(f"round {done}/{args.rounds}: {per_round:.1f} s")
        if done >= MIN_ROUNDS and elapsed + per_round > args.budget:
            stopped_early = f"stopped after {done} rounds: the time budget is {args.budget:.0f} s"
            break
    return {"rounds": done, "stopped_early": stopped_early}


# -- peak memory (one fresh subprocess per implementation and measure) ---------------------


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so the RSS baseline holds no slack."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_probe(impl_key: str, how: str, quick: bool) -> dict[str, Any]:
    """Peak memory of building the MLP and training it one epoch, in this (fresh) process.

    how="tracemalloc": peak of traced allocations (NumPy registers its data buffers
    with tracemalloc; PyTorch does not, so torch gets no tracemalloc figure).
    how="rss": peak resident set size (VmHWM, reset through /proc/self/clear_refs)
    minus the resident size just before; sees every library, but also allocator slack.
    Both start after the data set is loaded and after a short warm-up on a throwaway
    model, so neither counts the data nor the libraries' one-time start-up.
    """
    import tracemalloc

    cfg = R.config(quick)
    data = R.load_data(cfg)
    make = {i.key: i.factory for i in implementations("mlp", gpu=False)}[impl_key]
    warm = make(data, dataclasses.replace(cfg, mlp_train=4 * cfg.mlp_batch))
    warm.prepare()
    warm.run()
    runner = make(data, cfg)
    del warm
    gc.collect()
    _trim()
    out: dict[str, Any] = {"impl": impl_key, "how": how}
    if how == "tracemalloc":
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        runner.prepare()
        runner.run()
        out["peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
        base = _vm("VmRSS")
        runner.prepare()
        runner.run()
        out["peak_bytes"] = _vm("VmHWM") - base
    out["accuracy"] = runner.evaluate()
    return out


def measure_memory(quick: bool, log) -> dict[str, Any]:
    """Run every probe in its own subprocess; return {how: {impl: peak_bytes or why not}}.

    The probes run side by side: each measures only its own process, and no clock
    is read, so they cannot disturb one another's figures.
    """
    result: dict[str, Any] = {"tracemalloc": {}, "rss": {}}
    torch_skip = R.torch_devices()["cpu"]
    procs = {}
    for how, keys in (("tracemalloc", ["nnx", "bare"]), ("rss", ["nnx", "bare", "torch"])):
        for key in keys:
            if key == "torch" and torch_skip:
                result[how][key] = torch_skip
                continue
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", key, how]
            cmd += ["--quick"] if quick else []
            procs[(how, key)] = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
    for (how, key), proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            result[how][key] = "failed: timed out after 300 s"
        else:
            if proc.returncode != 0:
                tail = (err or out).strip().splitlines()[-1:] or ["?"]
                result[how][key] = f"failed: {tail[0]}"
            else:
                result[how][key] = json.loads(out.strip().splitlines()[-1])["peak_bytes"]
        log(f"memory {how} {key}: {result[how][key]}")
    return result


# -- report -----------------------------------------------------------------------------

#: the matmul floor's spread across rounds above which the run says the machine changed speed
SPEED_SPREAD = 1.2


def speed_changes(rows: list[Impl]) -> list[str]:
    """A line per case whose matmul floor (pure BLAS, the steadiest row) varied by more than
    :data:`SPEED_SPREAD` across rounds: the machine changed speed during the run."""
    lines = []
    for impl in rows:
        if impl.key == "floor" and len(impl.times) > 1:
            low, high = min(impl.times), max(impl.times)
            if high > SPEED_SPREAD * low:
                lines.append(
                    f"note: the {impl.case.upper()} matmul floor took {low:.3f}-{high:.3f} s across "
                    "rounds: the machine changed speed during the run, and nnx's ratios differ "
                    "between its fast and slow phases (README, Speed)"
                )
    return lines


TARGETS = {
    # case: [(description, numerator key, denominator key, bound, "<=" or ">=")]
    "mlp": [("<= 1.25x floor", "nnx", "floor", 1.25), ("<= 0.8x PyTorch", "nnx", "torch", 0.8)],
    "cnn": [("<= 1.0x PyTorch", "nnx", "torch", 1.0)],
    "xor": [
        ("<= 1.5x bare NumPy", "nnx", "bare", 1.5),
        (">= 6x faster than PyTorch", "nnx", "torch", 1 / 6),
    ],
}
MEMORY_TARGET = 1.3


def paired_ratio(a: Impl, b: Impl) -> float | None:
    """Median over rounds of a's time / b's time in the same round."""
    if a.skip or b.skip or not a.times or not b.times:
        return None
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=False))


def summarise(rows: list[Impl], memory: dict[str, Any] | None, quick: bool) -> dict[str, Any]:
    """Medians, ratios and targets for the JSON and the table."""
    out: dict[str, Any] = {"cases": {}, "targets": []}
    for case in CASES:
        impls = {i.key: i for i in rows if i.case == case}
        if not impls:
            continue
        entry = {}
        for key, i in impls.items():
            e: dict[str, Any] = {"label": i.label}
            if i.skip:
                e["skipped"] = i.skip
            else:
                e["median_s"] = statistics.median(i.times)
                e["times_s"] = i.times
                if i.accuracies:
                    e["accuracy"] = statistics.median(i.accuracies)
                refs = ["torch-gpu"] if key.endswith("-gpu") else ["floor", "bare", "torch"]
                for ref in refs:
                    r = paired_ratio(i, impls[ref]) if ref in impls else None
                    if r is not None:
                        e["x_" + ref.removesuffix("-gpu")] = r
            entry[key] = e
        out["cases"][case] = entry
        nnx = impls.get("nnx")
        for desc, num, den, bound in TARGETS[case]:
            t = {"case": case, "target": desc, "ratio": None, "met": None}
            if nnx is None or nnx.skip:
                t["why"] = nnx.skip if nnx else "not run"
            else:
                r = paired_ratio(impls[num], impls[den])
                t["ratio"] = r
                if r is None:
                    t["why"] = impls[den].skip or "not run"
                else:
                    t["met"] = bool(r <= bound)
                    acc = entry["nnx"].get("accuracy")
                    if acc is not None and acc < R.CHECKS[(case, quick)]:
                        t["met"], t["why"] = False, f"nnx accuracy {acc:.3f} below the bar"
            out["targets"].append(t)
    if memory is not None:
        tm = memory["tracemalloc"]
        t = {"case": "mem", "target": f"<= {MEMORY_TARGET}x bare NumPy (tracemalloc)", "met": None}
        if isinstance(tm.get("nnx"), int) and isinstance(tm.get("bare"), int):
            t["ratio"] = tm["nnx"] / tm["bare"]
            t["met"] = bool(t["ratio"] <= MEMORY_TARGET)
        else:
            t["ratio"], t["why"] = None, f"{tm.get('nnx')} / {tm.get('bare')}"
        out["targets"].append(t)
        out["memory"] = memory
    return out


def _fmt_ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _mib(x: Any) -> str:
    return f"{x / 2**20:.1f} MiB" if isinstance(x, int) else str(x)


def table(rows: list[Impl], summary: dict[str, Any], cfg: R.Config) -> str:
    """The markdown table: one line per implementation, targets on the nnx lines."""
    titles = dict(TITLES, cnn=TITLES["cnn"].format(cfg.cnn_steps))
    titles["xor"] = TITLES["xor"].format(cfg.xor_steps)
    titles["mlp"] = TITLES["mlp"].format(cfg.mlp_train)
    head = [
        "| case | implementation | median | x floor | x bare NumPy | x PyTorch | accuracy "
        "| target | met? |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    lines = list(head)
    targets: dict[str, list[dict]] = {}
    for t in summary["targets"]:
        targets.setdefault(t["case"], []).append(t)
    for case, entry in summary["cases"].items():
        for key, e in entry.items():
            if "skipped" in e:
                lines.append(f"| {titles[case]} | {e['label']} | {e['skipped']} | | | | | | |")
                continue
            acc = f"{e['accuracy']:.1%}" if "accuracy" in e else ""
            tgt, met = "", ""
            if key == "nnx":
                ts = targets.get(case, [])
                tgt = "; ".join(t["target"] for t in ts)
                met = "; ".join(_met(t) for t in ts)
            elif key == "bare" and "accuracy" in e:
                tgt = "self-check (accuracy bar)"
                met = "yes"
            if key.endswith("-gpu"):
                xt = f"{e['x_torch']:.2f}x PyTorch CUDA" if "x_torch" in e else ""
                cells = ["", "", xt]
            else:
                cells = [_fmt_ratio(e.get(f"x_{r}")) for r in ("floor", "bare", "torch")]
            lines.append(
                f"| {titles[case]} | {e['label']} | {e['median_s']:.3f} s | "
                + " | ".join(cells)
                + f" | {acc} | {tgt} | {met} |"
            )
    mem = summary.get("memory")
    if mem:
        tm, rss = mem["tracemalloc"], mem["rss"]
        tmt = [t for t in summary["targets"] if t["case"] == "mem"][0]
        for key, label in (
            ("nnx", "nnx (numpy)"),
            ("bare", "bare NumPy"),
            ("torch", "PyTorch CPU"),
        ):
            peak = _mib(tm[key]) + " tracemalloc, " if key in tm else ""
            peak += _mib(rss.get(key)) + " RSS"
            xb = ""
            if key == "nnx" and tmt["ratio"] is not None:
                xb = _fmt_ratio(tmt["ratio"])
            tgt = tmt["target"] if key == "nnx" else ""
            met = _met(tmt) if key == "nnx" else ""
            lines.append(f"| {titles['mem']} | {label} | {peak} | | {xb} | | | {tgt} | {met} |")
    return "\n".join(lines)


def _met(t: dict) -> str:
    if t["met"] is None:
        return "n/a (" + t.get("why", "?") + ")"
    return ("yes" if t["met"] else "**no**") + (f" ({t['why']})" if t.get("why") else "")


def environment() -> dict[str, Any]:
    """Versions, BLAS kernel and machine load, for the JSON."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "unset_for_this_process": os.environ.get("NNX_BENCH_UNSET", ""),
        "blas_env_kept": {v: os.environ[v] for v in _BLAS_VARS if v in os.environ},
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    try:
        from threadpoolctl import threadpool_info

        env["threadpools"] = threadpool_info()
    except ImportError:
        env["threadpools"] = "threadpoolctl not installed (pip install threadpoolctl)"
    return env


def blas_line(env: dict[str, Any]) -> str:
    pools = env["threadpools"]
    if isinstance(pools, str):
        line = pools
    else:
        line = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} {p.get('architecture', '')} "
            f"x{p.get('num_threads')}"
            for p in pools
            if p.get("user_api") == "blas"
        )
    if env["unset_for_this_process"]:
        line += f" (unset for this process: {env['unset_for_this_process']})"
    return line


# -- main -------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, few rounds")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 9; quick 1)")
    ap.add_argument(
        "--cases",
        default="mlp,cnn,xor,mem",
        help="comma list of mlp,cnn,xor,mem,ddp; scale (not default) adds the growth table",
    )
    ap.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the timed rounds")
    ap.add_argument("--no-gpu", action="store_true", help="skip the CUDA rows")
    ap.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE etc.")
    ap.add_argument("--memory-probe", nargs=2, metavar=("IMPL", "HOW"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in wanted if c not in (*CASES, "mem", "ddp", "scale")]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from mlp, cnn, xor, mem, ddp, scale")
    args.memory = "mem" in wanted
    args.ddp = "ddp" in wanted
    args.scale = "scale" in wanted
    args.cases = [c for c in CASES if c in wanted]
    if args.rounds is None:
        args.rounds = 1 if args.quick else 9
    if args.rounds < MIN_ROUNDS and not args.quick:
        ap.error(f"--rounds must be at least {MIN_ROUNDS} (medians need them); use --quick")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe, quick=args.quick)))
        return 0

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    cfg = R.config(args.quick)
    env = environment()
    log(f"BLAS: {blas_line(env)}; load average {env['loadavg_start'][0]:.2f}")
    if env["loadavg_start"][0] > 0.5:
        log("warning: the machine is busy; timings of multithreaded BLAS suffer most")
    data = R.load_data(cfg)
    log(f"data: {data.source}")
    rows = [i for case in args.cases for i in implementations(case, not args.no_gpu)]
    info = run_rounds(rows, data, cfg, args, log) if rows else {"rounds": 0, "stopped_early": ""}
    memory = measure_memory(args.quick, log) if args.memory else None
    ddp = None
    if args.ddp:
        import ddp as D

        ddp = D.measure(args.quick, 1 if args.quick else DDP_ROUNDS, log)
    growth = None
    if args.scale:
        import scale

        growth = scale.run(data, 1 if args.quick else scale.ROUNDS, log)
    summary = summarise(rows, memory, args.quick)
    env["loadavg_end"] = os.getloadavg()
    text = table(rows, summary, cfg)
    result = {
        "config": dataclasses.asdict(cfg),
        "quick": args.quick,
        "environment": env,
        **info,
        **summary,
        "scale": growth,
        "speed_changes": speed_changes(rows),
        "wall_s": time.perf_counter() - t0,
        "table": text,
    }
    if ddp is not None:
        result["ddp"] = ddp
        result["ddp_table"] = D.table(ddp)
    path = Path(args.json)
    with atomic_write(path, "w") as f:  # an interrupted run leaves the last result whole
        f.write(json.dumps(result, indent=1, default=str))
    print(
        f"nnx benchmark: {info['rounds']} alternating rounds, medians; ratios are medians of "
        f"per-round ratios. {'QUICK SMOKE RUN: sizes reduced. ' if args.quick else ''}"
        f"BLAS: {blas_line(env)}. Load average {env['loadavg_start'][0]:.2f} at start."
    )
    if info["stopped_early"]:
        print(info["stopped_early"])
    for line in result["speed_changes"]:
        print(line)
    if rows:  # --cases scale alone times no case rows
        print()
        print(text)
    if ddp is not None:
        print()
        print(result["ddp_table"])
    if growth:
        print("\nGrowth (one training step; ratios are medians of per-round ratios):\n")
        print(scale.table(growth))
    print()
    print(f"JSON written to {path.resolve()}  (total {result['wall_s']:.0f} s)")
    failed = [f"{i.case} / {i.label}: {i.skip}" for i in rows if i.skip.startswith("failed")]
    if failed:
        print("FAILED rows (exit status 1):\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except R.SelfCheckError as err:
        print(f"SELF-CHECK FAILED: {err}", file=sys.stderr)
        sys.exit(2)
