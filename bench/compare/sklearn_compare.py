"""Part 3: NTKClassifier (ours, through a local ntk-server) beside scikit-learn's SVC (RBF, Platt
probabilities), LogisticRegression and GaussianProcessClassifier on digits and Fashion-MNIST subsets.

Protocol (the same for every method): features standardized per pixel on the training rows; each grid is
scored on a stratified 20% validation split of the training set (fit on the other 80%) by validation NLL;
the chosen setting is refitted on the whole training set and evaluated once on the fixed test set.
GaussianProcessClassifier chooses its own RBF hyper-parameters by marginal likelihood (no grid) and is
skipped where its predicted fit time exceeds the cap.

usage: sklearn_compare.py [--quick]    writes results/sklearn.json
"""
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (digits_split, fashion_split, load_average, machine_info, median, save_json,  # noqa: E402
                    scores, standardize, wait_for_quiet)

warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=True) is deprecated in 1.9

GPC_CAP_S = float(os.environ.get("NTK_COMPARE_GPC_CAP", "900"))
SINGLE_REP_ABOVE_S = 60.0  # a final fit longer than this is timed once, not three times


def make(method, params, d):
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from ntkserve.sklearn import NTKClassifier

    if method.startswith("ntk"):
        return NTKClassifier(depth=3, activation="relu", w_std=1.5, b_std=0.1, reg_lambda=params["lambda"])
    if method == "svc":
        return SVC(kernel="rbf", C=params["C"], gamma=params["gamma_x_d"] / d, probability=True, random_state=0)
    if method == "logreg":
        return LogisticRegression(C=params["C"], solver="lbfgs", max_iter=params.get("max_iter", 1000))
    if method == "gpc":
        return GaussianProcessClassifier(ConstantKernel(1.0) * RBF(np.sqrt(d)), random_state=0)
    raise ValueError(method)


def grids(quick):
    if quick:
        return {"ntk": [{"lambda": lam} for lam in (1e-3, 1e-2)],
                "svc": [{"C": c, "gamma_x_d": 1.0} for c in (1.0, 10.0)],
                "logreg": [{"C": c} for c in (0.1, 1.0)]}  # no GPC: minutes even at N = 1000
    # Five log-spaced values per axis (SVC: 3 x 4): a first run with three-value grids chose an edge value
    # for every method on some data set.
    return {"ntk": [{"lambda": lam} for lam in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)],
            "svc": [{"C": c, "gamma_x_d": g} for c in (1.0, 10.0, 100.0) for g in (0.25, 0.5, 1.0, 2.0)],
            "logreg": [{"C": c} for c in (1e-3, 1e-2, 1e-1, 1.0, 10.0)], "gpc": [{}]}


def timed_fit_predict(method, params, xtr, ytr, xte, reps):
    fit_times, pred_times = [], []
    for rep in range(reps):
        model = make(method, params, xtr.shape[1])
        t = time.perf_counter()
        model.fit(xtr, ytr)
        fit_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        probs = model.predict_proba(xte)
        pred_times.append(time.perf_counter() - t)
        extra = {"kernel": str(model.kernel_)} if method == "gpc" else {}
        if method.startswith("ntk"):
            extra = {"converged": bool(model.converged_), "newton_steps": int(model.n_newton_steps_)}
        if method == "logreg":
            extra = {"n_iter": int(np.max(model.n_iter_))}
        if rep == 0 and fit_times[0] > SINGLE_REP_ABOVE_S:
            break
    return probs, {"fit_s": median(fit_times), "fit_times_s": fit_times, "predict_s": median(pred_times),
                   "predict_times_s": pred_times, **extra}


def run_dataset(name, xtr, ytr, xte, yte, quick, gpc_estimate):
    from sklearn.model_selection import train_test_split

    xtr, xte = standardize(xtr, xte)
    xa, xv, ya, yv = train_test_split(xtr, ytr, test_size=0.2, random_state=0, stratify=ytr)
    n, d = xtr.shape
    rows = []
    for method, grid in grids(quick).items():
        load = wait_for_quiet(max_wait=0 if quick else None)
        if method == "gpc":
            predicted = gpc_estimate(n)
            if predicted is not None and predicted > GPC_CAP_S:
                rows.append({"dataset": name, "n": n, "method": "gpc", "skipped":
                             f"predicted fit ~{predicted:.0f} s > cap {GPC_CAP_S:.0f} s (O(N^3) per class and per "
                             "optimizer step)", "load_before": load})
                print(f"  {name} gpc skipped (predicted {predicted:.0f} s)", flush=True)
                continue
        t = time.perf_counter()
        val = []
        if len(grid) > 1:
            for params in grid:
                model = make(method, params, d).fit(xa, ya)
                val.append({"params": params, **scores(model.predict_proba(xv), yv)})
            best = min(val, key=lambda v: v["nll"])["params"]
        else:
            best = grid[0]
        grid_s = time.perf_counter() - t
        reps = 1 if quick else 3
        chosen = [("ntk" if method == "ntk" else method, best)]
        if method == "ntk" and best.get("lambda") != 1e-3:
            chosen.append(("ntk_fixed", {"lambda": 1e-3}))  # the default, beside the selected one
        for label, params in chosen:
            probs, timing = timed_fit_predict(label, params, xtr, ytr, xte, reps)
            row = {"dataset": name, "n": n, "d": d, "n_test": len(yte), "method": label, "params": params,
                   "grid_s": grid_s if label == method else None, "validation": val if label == method else None,
                   "load_before": load, "load_after": load_average(), **timing, **scores(probs, yte)}
            rows.append(row)
            print(f"  {name} {label} {params}: acc {row['accuracy']:.4f} nll {row['nll']:.4f} ece {row['ece']:.4f} "
                  f"fit {row['fit_s']:.2f} s predict {row['predict_s']:.2f} s (grid {grid_s:.0f} s, load {load:.1f})",
                  flush=True)
    return rows


def main():
    quick = "--quick" in sys.argv
    info = machine_info()
    results = {"machine": info, "quick": quick, "gpc_cap_s": GPC_CAP_S, "grids": grids(quick), "rows": []}
    gpc_times = {}

    def gpc_estimate(n):
        # O(N^3) from the largest measured run (digits included: the N^3 factorizations dominate); None
        # before any.
        if not gpc_times:
            return None
        n0 = max(gpc_times)
        return gpc_times[n0] * (n / n0) ** 3

    def record_gpc(rows):
        for r in rows:
            if r["method"] == "gpc" and "fit_s" in r:
                gpc_times[r["n"]] = r["fit_s"]

    datasets = [("digits", lambda: digits_split())]
    sizes = [1000] if quick else [2000, 5000, 10000]
    n_test = 1000 if quick else 5000
    for n in sizes:
        datasets.append((f"fashion-{n // 1000}k", lambda n=n: fashion_split(n, n_test)))
    for name, loader in datasets:
        xtr, ytr, xte, yte = loader()
        print(f"sklearn: {name} N={len(ytr)} test={len(yte)}", flush=True)
        rows = run_dataset(name, xtr, ytr, xte, yte, quick, gpc_estimate)
        record_gpc(rows)
        results["rows"] += rows
        save_json("sklearn_quick.json" if quick else "sklearn.json", results)


if __name__ == "__main__":
    main()
