"""Part 2: neural-tangents predict.gradient_descent (mean cross-entropy) against ntkctl fit.

(a) lambda = 0, label-smoothed targets: NT integrates the function-space gradient flow
    df/dt = -(1/N) Theta (softmax f - Y); as t -> inf it reaches our closed form (SPEC section 2).
(b) lambda > 0: the flow of SPEC section 2, df/dt = -[(1/N) Theta g + lambda (f - f0)], given to NT's
    gradient_descent as the loss mean_i CE + (lambda/2) (f - f0)^T Theta^-1 (f - f0): NT moves f by
    -Theta grad(loss) = -(1/N) Theta g - lambda (f - f0), and the test points by
    -Theta(x*, X) grad(loss), which is SPEC's f(x*, t) = f0(x*) - Theta(x*, X) B(t)/N (B = -N Theta^-1 (f - f0)).
Both with f0 = 0 (the deterministic predictor), eta = 1, float64, on one kernel (ntkctl's, which agrees with
NT's off the diagonal to ~1e-16; NT's own diagonal carries ~1e-8 rounding noise, see kernels.py).

usage: dynamics.py [--quick]    writes results/dynamics.json
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (fashion_split, import_neural_tangents, load_average, machine_info, median,  # noqa: E402
                    ntkctl_binary, run_ntkctl, save_json, standardize, wait_for_quiet)

ARCH = ["--depth", "3", "--activation", "relu", "--w-std", "1.5", "--b-std", "0.1"]
C = 10


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def targets(y, eps):
    return (1 - eps) * np.eye(C)[y] + eps / C


def closed_form(ktt, kst, y):
    """SPEC section 2, lambda = 0, f0 = 0: f_inf(X) = log Y + c 1^T, f(x*) = Theta*X Theta^-1 f_inf(X)."""
    import scipy.linalg as sl

    fx = np.log(y)
    fx = fx - fx.mean(axis=1, keepdims=True)
    return kst @ sl.cho_solve(sl.cho_factor(ktt), fx)


def ours_fit(tmp, lam, eps, threads, reps, time_t=None):
    args = ["fit", "--x", os.path.join(tmp, "x.npy"), "--labels", os.path.join(tmp, "y.npy"),
            "--lambda", repr(lam), "--out", os.path.join(tmp, "m.ntk"), "--backend", "cpu", "--quiet"] + ARCH
    if eps > 0:
        args += ["--label-smoothing", repr(eps)]
    predict_extra = []
    if time_t is not None:
        # Workaround: `ntkctl predict` refuses a lambda = 0 finite-time model fitted with f0 = 0 ("the model
        # has no kernel factor", core/src/uncertainty.cpp checks the factor before the mode). With an explicit
        # all-zero f0 at fit and predict time the prediction is the same and goes through.
        np.save(os.path.join(tmp, "f0_train.npy"), np.zeros((np.load(os.path.join(tmp, "y.npy")).shape[0], C)))
        np.save(os.path.join(tmp, "f0_test.npy"), np.zeros((np.load(os.path.join(tmp, "xt.npy")).shape[0], C)))
        args += ["--time", repr(time_t), "--lr", "1", "--f0", os.path.join(tmp, "f0_train.npy")]
        predict_extra = ["--f0", os.path.join(tmp, "f0_test.npy")]
    fit_times, predict_times = [], []
    for rep in range(reps + 1):  # the first is a warm-up
        out, s = run_ntkctl(args, threads=threads)
        pred_dir = os.path.join(tmp, "pred")
        t = time.perf_counter()
        subprocess.run([ntkctl_binary(), "predict", "--model", os.path.join(tmp, "m.ntk"), "--x",
                        os.path.join(tmp, "xt.npy"), "--out-dir", pred_dir, "--backend", "cpu", "--threads",
                        str(threads)] + predict_extra, check=True, capture_output=True, env=dict(os.environ, NTK_LOG_LEVEL="warning"))
        wall = time.perf_counter() - t
        if rep > 0:
            fit_times.append(s)
            predict_times.append(wall)
    return {"fit_s": median(fit_times), "fit_times_s": fit_times, "predict_wall_s": median(predict_times),
            "message": out.strip(), "logits": np.load(os.path.join(pred_dir, "logits.npy")),
            "probs": np.load(os.path.join(pred_dir, "probs.npy"))}


def main():
    quick = "--quick" in sys.argv
    n, n_test = (300, 300) if quick else (1000, 1000)
    threads = 2
    lam_pos = 1e-3
    eps = 0.1
    jax, nt = import_neural_tangents(True)
    import jax.numpy as jnp
    from jax.nn import log_softmax
    from neural_tangents import stax

    xtr, ytr, xte, yte = fashion_split(n, n_test)
    xtr, xte = standardize(xtr, xte)
    info = machine_info()
    results = {"machine": info, "quick": quick, "n": n, "n_test": n_test, "d": xtr.shape[1], "threads": threads,
               "data": "Fashion-MNIST (standardized per pixel)", "cases": []}
    with tempfile.TemporaryDirectory(prefix="ntk-dyn-") as tmp:
        np.save(os.path.join(tmp, "x.npy"), xtr)
        np.save(os.path.join(tmp, "y.npy"), ytr)
        np.save(os.path.join(tmp, "xt.npy"), xte)
        # One kernel for both (see the module docstring).
        run_ntkctl(["kernel", "--x1", os.path.join(tmp, "x.npy"), "--out", os.path.join(tmp, "ktt.npy")] + ARCH)
        run_ntkctl(["kernel", "--x1", os.path.join(tmp, "xt.npy"), "--x2", os.path.join(tmp, "x.npy"), "--out",
                    os.path.join(tmp, "kst.npy")] + ARCH)
        ktt = np.load(os.path.join(tmp, "ktt.npy"))
        kst = np.load(os.path.join(tmp, "kst.npy"))
        _, _, kernel_fn = stax.serial(*[stax.Dense(512, 1.5, 0.1), stax.Relu()] * 3, stax.Dense(1, 1.5, 0.1))
        t = time.perf_counter()
        nt_ktt = np.asarray(kernel_fn(xtr, None, "ntk"))
        nt_kst = np.asarray(kernel_fn(xte, xtr, "ntk"))
        results["nt_kernel_s_first_call"] = time.perf_counter() - t
        results["kernel_rel_diff"] = float(max(np.max(np.abs(nt_ktt - ktt)) / np.max(ktt),
                                               np.max(np.abs(nt_kst - kst)) / np.max(kst)))
        eig = np.linalg.eigvalsh(ktt / n)
        results["theta_over_n_eigs"] = [float(eig[0]), float(eig[-1])]
        y_smooth = targets(ytr, eps)
        cf_ours = closed_form(ktt, kst, y_smooth)
        cf_ntk = closed_form(nt_ktt, nt_kst, y_smooth)
        results["closed_form_nt_kernel_vs_ours_kernel"] = float(np.max(np.abs(cf_ours - cf_ntk)))

        cases = [("a", 0.0, eps, [10.0, 1e2, 1e3, 1e4, 3e4, 1e5]),
                 ("b", lam_pos, 0.0, [10.0, 1e2, 1e3, 5e3, 1e4, 1.5e4, 2e4, 3e4])]
        if quick:
            cases = [("a", 0.0, eps, [10.0, 1e2, 1e3]), ("b", 1e-2, 0.0, [10.0, 1e2, 1e3, 2e3])]
        finite_t = 100.0
        for name, lam, e, t_grid in cases:
            y = targets(ytr, e)
            load = wait_for_quiet(max_wait=0 if quick else None)
            print(f"dynamics ({name}): lambda={lam} eps={e} load {load:.2f}", flush=True)
            mine = ours_fit(tmp, lam, e, threads, 3)
            case = {"case": name, "lambda": lam, "label_smoothing": e, "load_before": load, "t_grid": t_grid,
                    "ours_fit_s": mine["fit_s"], "ours_fit_times_s": mine["fit_times_s"],
                    "ours_predict_wall_s": mine["predict_wall_s"], "ours_message": mine["message"]}
            logits, probs = mine["logits"], mine["probs"]
            if lam == 0:
                case["ours_vs_numpy_closed_form"] = float(np.max(np.abs(logits - cf_ours)))
            else:
                # Our fixed point checked independently: predict on the training points, SPEC residual.
                np.save(os.path.join(tmp, "xt_train.npy"), xtr)
                subprocess.run([ntkctl_binary(), "predict", "--model", os.path.join(tmp, "m.ntk"), "--x",
                                os.path.join(tmp, "xt_train.npy"), "--out-dir", os.path.join(tmp, "ptr")],
                               check=True, capture_output=True)
                ftr = np.load(os.path.join(tmp, "ptr", "logits.npy"))
                case["ours_fixed_point_residual"] = float(np.max(np.abs(ftr + ktt @ (softmax(ftr) - y) / (n * lam))))

            kj = jnp.asarray(ktt)
            if lam > 0:
                kinv = jnp.asarray(np.linalg.inv(ktt))  # precomputed once (untimed); a matmul per evaluation
                kinv = 0.5 * (kinv + kinv.T)
                loss = lambda fx, yy: (-jnp.sum(yy * log_softmax(fx)) / n + 0.5 * lam * jnp.sum(fx * (kinv @ fx)))
            else:
                loss = lambda fx, yy: -jnp.sum(yy * log_softmax(fx)) / n
            predict_fn = nt.predict.gradient_descent(loss, kj, jnp.asarray(y), learning_rate=1.0)
            f0_tr, f0_te, kst_j = jnp.zeros((n, C)), jnp.zeros((n_test, C)), jnp.asarray(kst)

            def run(ts):
                t0 = time.perf_counter()
                _, fte = predict_fn(jnp.asarray(ts), f0_tr, f0_te, kst_j)
                fte = np.asarray(fte.block_until_ready())
                return fte, time.perf_counter() - t0

            run([1e-3 * (i + 1) for i in range(len(t_grid))])  # compile (same shapes), negligible integration
            fte, seconds = run(t_grid)
            gaps = []
            for i, tt in enumerate(t_grid):
                gaps.append({"t": tt, "max_abs_logit": float(np.max(np.abs(fte[i] - logits))),
                             "max_abs_prob": float(np.max(np.abs(softmax(fte[i]) - probs)))})
                print(f"  t={tt:g}: max |logit gap| {gaps[-1]['max_abs_logit']:.2e}  "
                      f"max |prob gap| {gaps[-1]['max_abs_prob']:.2e}", flush=True)
            case["nt_gaps"] = gaps
            case["nt_grid_s"] = seconds
            case["nt_grid_load_after"] = load_average()
            reached = [g["t"] for g in gaps if g["max_abs_logit"] <= 1e-6]
            case["nt_t_reaching_1e-6"] = reached[0] if reached else None
            target_t = reached[0] if reached else t_grid[-1]
            times = []
            for _ in range(2 if quick else 3):
                times.append(run([target_t] + [target_t * (1 + 1e-9 * (i + 1)) for i in range(len(t_grid) - 1)])[1])
            case["nt_to_target_t"] = target_t
            case["nt_to_target_times_s"] = times
            case["nt_to_target_s"] = median(times)
            case["ratio_nt_over_ours_fit"] = case["nt_to_target_s"] / mine["fit_s"]
            case["ratio_nt_over_ours_fit_predict"] = case["nt_to_target_s"] / (mine["fit_s"] + mine["predict_wall_s"])
            print(f"  NT to t={target_t:g}: {case['nt_to_target_s']:.1f} s; ours fit {mine['fit_s']:.3f} s "
                  f"-> {case['ratio_nt_over_ours_fit']:.0f}x", flush=True)

            # The same flow at a finite time: ntkctl fit --time T (its Dormand-Prince) against NT's.
            fin = ours_fit(tmp, lam, e, threads, 1, time_t=finite_t)
            nt_fin, nt_fin_s = run([finite_t] + [finite_t * (1 + 1e-9 * (i + 1)) for i in range(len(t_grid) - 1)])
            case["finite_time"] = {"t": finite_t, "ours_s": fin["fit_s"], "nt_s": nt_fin_s,
                                   "max_abs_logit": float(np.max(np.abs(nt_fin[0] - fin["logits"]))),
                                   "ours_message": fin["message"]}
            print(f"  finite t={finite_t:g}: max |logit gap| {case['finite_time']['max_abs_logit']:.2e}", flush=True)
            case["load_after"] = load_average()
            results["cases"].append(case)
    save_json("dynamics_quick.json" if quick else "dynamics.json", results)


if __name__ == "__main__":
    main()
