"""Part 1: NNGP/NTK of the depth-3 ReLU network (W_std 1.5, b_std 0.1, NTK parameterization), ntkctl
against neural-tangents on the same Fashion-MNIST inputs (d = 784): agreement and time.

usage: kernels.py [--quick]   writes results/kernels.json
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (HERE, fashion_split, load_average, machine_info, median, run_ntkctl, save_json,  # noqa: E402
                    standardize, wait_for_quiet)

ARCH = ["--depth", "3", "--activation", "relu", "--w-std", "1.5", "--b-std", "0.1"]
DEPTH, W_STD, B_STD = 3, 1.5, 0.1


def exact_relu_diagonal(x, which):
    """K(x, x) for ReLU from the identical-input recursion (angle exactly 0 in every layer):
    E[phi(u)^2] = q/2, E[phi'(u)^2] = 1/2 (as in tests/reference/neural_tangents_test.py)."""
    c = 0.5
    q = np.sum(x * x, axis=1) / x.shape[1]
    s = W_STD ** 2 * q + B_STD ** 2
    t = s
    for _ in range(DEPTH):
        t = (W_STD ** 2 * c * s + B_STD ** 2) + W_STD ** 2 * c * t
        s = W_STD ** 2 * c * s + B_STD ** 2
    return s if which == "nngp" else t


def xla_env(threads):
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        env.pop("XLA_FLAGS", None)
    return env


def nt_worker(x_path, dtype, threads, reps, save=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, os.path.join(HERE, "nt_kernel_worker.py"), x_path, dtype, str(reps), out]
    if save:
        cmd.append(save)
    if threads == 1:
        cmd = ["taskset", "-c", "0"] + cmd  # XLA's flags above, and one core to be sure
    subprocess.run(cmd, check=True, env=xla_env(threads))
    with open(out) as f:
        r = json.load(f)
    os.unlink(out)
    return r


def ours(x_path, dtype, threads, reps, out_path, which="ntk"):
    args = ["kernel", "--x1", x_path, "--kernel", which, "--out", out_path, "--dtype", dtype, "--backend", "cpu"] + ARCH
    run_ntkctl(args, threads=threads)  # warm-up (page cache, CPU frequency)
    times = []
    for _ in range(reps):
        times.append(run_ntkctl(args, threads=threads)[1])
    return {"times_s": times, "median_s": median(times), "load": load_average()}


def rel_max(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def accuracy(tmp, x, tag):
    """float64 ours vs neural-tangents (x64) entry by entry; float32 both against the float64 reference."""
    res = {}
    n = x.shape[0]
    off = ~np.eye(n, dtype=bool)
    for which in ("nngp", "ntk"):
        nt64 = np.load(os.path.join(tmp, f"nt_{tag}_float64_{which}.npy"))
        nt32 = np.load(os.path.join(tmp, f"nt_{tag}_float32_{which}.npy")).astype(np.float64)
        x_path = os.path.join(tmp, f"x_{tag}.npy")
        k_path = os.path.join(tmp, "k.npy")
        run_ntkctl(["kernel", "--x1", x_path, "--kernel", which, "--out", k_path, "--dtype", "float64"] + ARCH)
        o64 = np.load(k_path)
        run_ntkctl(["kernel", "--x1", x_path, "--kernel", which, "--out", k_path, "--dtype", "float32"] + ARCH)
        o32 = np.load(k_path).astype(np.float64)
        exact = exact_relu_diagonal(x, which)
        scale = np.max(np.abs(nt64))
        res[which] = {
            "f64_offdiag_rel_max": float(np.max(np.abs(o64 - nt64)[off]) / scale),
            "f64_offdiag_rel_elementwise": float(np.max(np.abs(o64 - nt64)[off] / np.abs(nt64[off]))),
            "f64_diag_ours_vs_exact": float(np.max(np.abs(np.diag(o64) - exact)) / scale),
            "f64_diag_nt_vs_exact": float(np.max(np.abs(np.diag(nt64) - exact)) / scale),
            "f64_all_rel_max_vs_nt": rel_max(o64, nt64),
            "f32_ours_vs_f64": rel_max(o32, nt64),
            "f32_nt_vs_f64": rel_max(nt32, nt64),
            "f32_ours_vs_nt32": rel_max(o32, nt32),
        }
    return res


def main():
    quick = "--quick" in sys.argv
    sizes = [500, 1000] if quick else [1000, 4000]
    reps = 3
    thread_counts = [2] if quick else [1, 2]
    info = machine_info()
    xtr, _, _, _ = fashion_split(max(sizes), 0)
    x_all = standardize(xtr)[0]
    results = {"machine": info, "quick": quick, "sizes": sizes, "runs": [], "accuracy": {}}
    with tempfile.TemporaryDirectory(prefix="ntk-compare-") as tmp:
        for n in sizes:
            x = np.ascontiguousarray(x_all[:n])
            tag = str(n)
            x_path = os.path.join(tmp, f"x_{tag}.npy")
            np.save(x_path, x)
            for dtype in ("float64", "float32"):
                for threads in thread_counts:
                    load_before = wait_for_quiet(max_wait=0 if quick else None)
                    print(f"kernels: N={n} {dtype} threads={threads} load {load_before:.2f}", flush=True)
                    save = os.path.join(tmp, f"nt_{tag}_{dtype}") if threads == thread_counts[-1] else None
                    nt = nt_worker(x_path, dtype, threads, reps, save)
                    mine = ours(x_path, dtype, threads, reps, os.path.join(tmp, "k.npy"))
                    best_name = min(nt["variants"], key=lambda k: nt["variants"][k]["median_s"])
                    row = {"n": n, "d": x.shape[1], "dtype": dtype, "threads": threads, "load_before": load_before,
                           "load_after": load_average(), "ours": mine, "nt": nt, "nt_best": best_name,
                           "nt_best_s": nt["variants"][best_name]["median_s"],
                           "ratio_nt_over_ours": nt["variants"][best_name]["median_s"] / mine["median_s"]}
                    print(f"  ours {mine['median_s']:.3f} s  neural-tangents {row['nt_best_s']:.3f} s ({best_name})"
                          f"  -> ours {row['ratio_nt_over_ours']:.1f}x faster", flush=True)
                    results["runs"].append(row)
            results["accuracy"][tag] = accuracy(tmp, x, tag)
            print(f"  accuracy N={n}: " + json.dumps(results["accuracy"][tag]), flush=True)
    save_json("kernels_quick.json" if quick else "kernels.json", results)


if __name__ == "__main__":
    main()
