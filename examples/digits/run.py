"""scikit-learn's bundled digits (8x8 images, 10 classes) on ntk-server: fit an NTK classifier with
cross-entropy, then accuracy, NLL and ECE of the predictions with linearized uncertainty over the
random initialization, a reliability diagram and per-class mutual-information histograms.

    python examples/digits/run.py [--out DIR] [--server HOST:PORT]

Without --server a private local ntk-server is started (NTK_SERVER_BINARY, PATH or build/bin).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import ntkserve
import ntkserve.plots

HERE = os.path.dirname(os.path.abspath(__file__))


def nll(probs, labels):
    """Mean negative log-likelihood of the true labels (probabilities clipped at 1e-12)."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def scores(probs, labels):
    _, ece = ntkserve.plots.reliability(probs, labels)
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)), "nll": nll(probs, labels), "ece": float(ece)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "output"), help="output folder (default: %(default)s)")
    ap.add_argument("--server", default=None, help="HOST:PORT of an ntk-server (default: start a local one)")
    ap.add_argument("--lambda", dest="lam", type=float, default=1e-5, help="regularization (default %(default)g)")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--w-std", type=float, default=1.5)
    ap.add_argument("--b-std", type=float, default=0.1)
    ap.add_argument("--train-size", type=int, default=0, help="use only this many training images (0: all 1257)")
    ap.add_argument("--test-size", type=int, default=0, help="use only this many test images (0: all 540)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    # The digits, pixel values 0..16 scaled to [0, 1]; a fixed stratified 70/30 split.
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    if args.train_size:
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    if args.test_size:
        x_test, y_test = x_test[:args.test_size], y_test[:args.test_size]
    print(f"digits: {len(x_train)} train, {len(x_test)} test, d = {x.shape[1]}, 10 classes")

    started = time.time()
    with ntkserve.Client(args.server) as client:
        name = f"digits-{os.getpid()}-{int(started)}"
        client.upload(name, x_train, y_train.astype(np.int64), num_classes=10)
        t0 = time.time()
        job = client.fit(name, lambda_=args.lam, depth=args.depth, w_std=args.w_std, b_std=args.b_std,
                         description="examples/digits")
        info = job.wait(progress=sys.stderr.isatty())
        fit_s = time.time() - t0
        print(f"fit: {info.model_id}, {info.solver_used}, {info.newton_steps} Newton steps, residual "
              f"{info.residual:.1e}, {fit_s:.1f} s")
        t0 = time.time()
        det = client.predict(info.model_id, x_test)  # the deterministic predictor (f0 = 0)
        det_s = time.time() - t0
        t0 = time.time()
        p = client.predict(info.model_id, x_test, uncertainty="linearized")
        lin_s = time.time() - t0
        client.delete_model(info.model_id)
        client.delete_dataset(name)

    det_scores = scores(det.probs, y_test)
    lin_scores = scores(p.probs, y_test)
    wrong = p.classes != y_test
    # How well the mutual information flags the test images the model gets wrong.
    mi_auroc_wrong = float(roc_auc_score(wrong, p.mutual_info)) if 0 < wrong.sum() < len(wrong) else None
    ece = ntkserve.plots.reliability_diagram(p.probs, y_test, os.path.join(args.out, "reliability.png"),
                                             title="digits, linearized")
    ntkserve.plots.uncertainty_histograms(p.mutual_info, y_test, p.classes, os.path.join(args.out, "mutual_info.png"),
                                          name="digits: mutual information per true class (correct / wrong)")

    print()
    print(f"{'probabilities':28s} {'accuracy':>9s} {'NLL':>8s} {'ECE':>8s}")
    for label, s in (("linearized E[softmax f]", lin_scores), ("deterministic (f0 = 0)", det_scores)):
        print(f"{label:28s} {s['accuracy']:9.4f} {s['nll']:8.4f} {s['ece']:8.4f}")
    print(f"mutual information: mean {p.mutual_info[~wrong].mean():.3e} on {int((~wrong).sum())} correct, "
          f"{p.mutual_info[wrong].mean() if wrong.any() else float('nan'):.3e} on {int(wrong.sum())} wrong "
          "predictions; "
          f"AUROC (wrong vs correct) {mi_auroc_wrong if mi_auroc_wrong is None else round(mi_auroc_wrong, 4)}")
    print(f"time: fit {fit_s:.1f} s, predict {det_s:.2f} s, predict with linearized uncertainty {lin_s:.1f} s, "
          f"total {time.time() - started:.1f} s; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    results = {
        "example": "digits",
        "date": time.strftime("%Y-%m-%d"),
        "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                 "python": platform.python_version()},
        "data": {"train": int(len(x_train)), "test": int(len(x_test)), "features": int(x.shape[1]),
                 "scaling": "pixels / 16", "split": "train_test_split(test_size=0.3, random_state=0, stratify=y)"},
        "model": {"lambda": args.lam, "depth": args.depth, "w_std": args.w_std, "b_std": args.b_std,
                  "activation": "relu", "solver": info.solver_used, "newton_steps": int(info.newton_steps),
                  "converged": bool(info.converged)},
        "linearized": lin_scores,
        "deterministic": det_scores,
        "mutual_info": {"mean": float(p.mutual_info.mean()),
                        "mean_correct": float(p.mutual_info[~wrong].mean()),
                        "mean_wrong": float(p.mutual_info[wrong].mean()) if wrong.any() else None,
                        "auroc_wrong_vs_correct": mi_auroc_wrong},
        "seconds": {"fit": round(fit_s, 2), "predict": round(det_s, 3), "predict_linearized": round(lin_s, 2),
                    "total": round(time.time() - started, 2)},
        "files": ["reliability.png", "mutual_info.png"],
    }
    assert abs(ece - lin_scores["ece"]) < 1e-12
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}/results.json, reliability.png, mutual_info.png")
    return results


if __name__ == "__main__":
    main()
