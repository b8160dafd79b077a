"""Fashion-MNIST on ntk-server: accuracy, NLL and ECE of an NTK classifier (cross-entropy, lambda > 0)
on the 10k test images, and its linearized uncertainty over the random initialization on shifted
inputs: Gaussian noise, rotation, and a class never seen in training. The mutual information should be
higher on shifted and unseen inputs than on clean test images; its AUROC (clean vs each shift) says by
how much.

    python examples/fashion_mnist/run.py [--out DIR] [--server HOST:PORT] [--train-size N]

Data: Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), the IDX files under
/usr/share/datasets/fashion-mnist (gzipped or not). Pixels are scaled to [0, 1].
"""
import argparse
import gzip
import json
import os
import platform
import sys
import time

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

import ntkserve
import ntkserve.plots

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = "/usr/share/datasets/fashion-mnist"
FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_files(folder=DATA):
    """{key: path} of the four IDX files in `folder` (.gz or plain), or None when any is missing."""
    found = {}
    for key, stem in FILES.items():
        for candidate in (stem + ".gz", stem):
            if os.path.exists(os.path.join(folder, candidate)):
                found[key] = os.path.join(folder, candidate)
                break
        else:
            return None
    return found


def load(folder=DATA):
    files = find_files(folder)
    if files is None:
        raise SystemExit(f"Fashion-MNIST not found in {folder}: apt-get install -y dataset-fashion-mnist "
                         f"(or --data-dir DIR with the four IDX files)")
    x_train = read_idx(files["x_train"]).reshape(-1, 784) / 255.0
    x_test = read_idx(files["x_test"]).reshape(-1, 784) / 255.0
    return x_train, read_idx(files["y_train"]).astype(np.int64), x_test, read_idx(files["y_test"]).astype(np.int64)


def nll(probs, labels):
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def scores(probs, labels):
    _, ece = ntkserve.plots.reliability(probs, labels)
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)), "nll": nll(probs, labels), "ece": float(ece)}


def stratified(labels, n, rng):
    """n indices with (almost) equal counts per class, in random order."""
    classes = np.unique(labels)
    per = -(-n // len(classes))
    pick = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per] for c in classes])
    return rng.permutation(pick)[:n]


def rotate(images, rng, low, high):
    """Each 28x28 image rotated by a random angle in +-[low, high] degrees (bilinear, corners zero)."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        angle = rng.uniform(low, high) * rng.choice((-1, 1))
        out[i] = ndimage.rotate(img.reshape(28, 28), angle, reshape=False, order=1, mode="constant").ravel()
    return np.clip(out, 0.0, 1.0)


def connect(args):
    """The client and the backend it computes on: a local server tries cuda:0 first unless --backend cpu."""
    if args.server:
        client = ntkserve.Client(args.server)
    else:
        # A local server picks the first CUDA device on "auto"; --backend forces one or the other.
        flag = {"auto": "auto", "cpu": "cpu", "cuda": "cuda:0"}[args.backend]
        client = ntkserve.Client(local_args=("--backend", flag))
    backend = client.server_info().backend  # "cpu" or "cuda:N"
    return client, "cuda" if backend.startswith("cuda") else "cpu"


def fit(client, name, x, y, classes, args, what):
    client.upload(name, x, y, num_classes=classes)
    t0 = time.time()
    info = client.fit(name, lambda_=args.lam, depth=args.depth, w_std=args.w_std, b_std=args.b_std,
                      description=f"examples/fashion_mnist {what}").wait(progress=sys.stderr.isatty())
    seconds = time.time() - t0
    print(f"  fit {what}: {len(x)} images, {info.solver_used}, {info.newton_steps} Newton steps, "
          f"{seconds:.1f} s", flush=True)
    client.delete_dataset(name)
    return info, seconds


def mi_histograms(clean, shifted, path):
    """log10 mutual information, clean vs each shift, one panel per shift."""
    plt = ntkserve.plots._pyplot()
    fig, axes = plt.subplots(1, len(shifted), figsize=(4 * len(shifted), 3.2), squeeze=False)
    for ax, (label, (c, s, auroc)) in zip(axes.flat, shifted.items()):
        lc, ls = np.log10(np.maximum(c, 1e-12)), np.log10(np.maximum(s, 1e-12))
        bins = np.linspace(min(lc.min(), ls.min()), max(lc.max(), ls.max()), 30)
        ax.hist(lc, bins=bins, alpha=0.6, color="#4878d0", label="clean test")
        ax.hist(ls, bins=bins, alpha=0.6, color="#d65f5f", label=label)
        ax.set_title(f"{label}: AUROC {auroc:.3f}", fontsize=10)
        ax.set_xlabel("log10 mutual information")
        ax.legend(fontsize=8)
    axes.flat[0].set_ylabel("test images")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def examples_strip(rows, path):
    plt = ntkserve.plots._pyplot()
    fig, axes = plt.subplots(len(rows), 6, figsize=(6 * 0.9, len(rows) * 1.0), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for k in range(6):
            axes[r, k].imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            axes[r, k].set_xticks([])
            axes[r, k].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=64)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "output"), help="output folder (default: %(default)s)")
    ap.add_argument("--server", default=None, help="HOST:PORT of an ntk-server (default: start a local one)")
    ap.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto",
                    help="backend of the local server (auto: cuda:0 if this build and machine have one); "
                         "with --server, what that server runs on (it sets the default sizes)")
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--train-size", type=int, default=0,
                    help="training images of the main model (default: 60000 on CUDA, else 10000)")
    ap.add_argument("--test-size", type=int, default=10000, help="test images scored (default all 10000)")
    ap.add_argument("--uncertainty-train-size", type=int, default=0,
                    help="training images of the models whose linearized uncertainty is computed "
                         "(default: 10000 on CUDA, else 2000)")
    ap.add_argument("--shift-size", type=int, default=0,
                    help="test images per condition (clean, noise, rotation, unseen class) for the uncertainty "
                         "(default: 1000 on CUDA, else 200)")
    ap.add_argument("--noise", type=float, default=0.3, help="std of the Gaussian pixel noise (default %(default)g)")
    ap.add_argument("--rotation", type=float, nargs=2, default=(30.0, 60.0), metavar=("LOW", "HIGH"),
                    help="rotation angles in degrees, either sign (default 30 60)")
    ap.add_argument("--holdout-class", type=int, default=8, help="class left out of training (default 8, Bag)")
    ap.add_argument("--lambda", dest="lam", type=float, default=1e-5)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--w-std", type=float, default=1.5)
    ap.add_argument("--b-std", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    rng = np.random.default_rng(args.seed)

    x_train, y_train, x_test, y_test = load(args.data_dir)
    client, backend = connect(args)
    gpu = backend == "cuda"
    train_size = args.train_size or (60000 if gpu else 10000)
    unc_train = args.uncertainty_train_size or min(train_size, 10000 if gpu else 2000)
    shift_size = args.shift_size or (1000 if gpu else 200)
    test_size = min(args.test_size, len(x_test))
    print(f"Fashion-MNIST: backend {backend}; main model on {train_size} training images, scored on {test_size} "
          f"test images; uncertainty models on {unc_train} training images, {shift_size} test images per condition")
    tag = f"{os.getpid()}-{int(started)}"
    timing = {}

    with client:
        # 1. The main model: accuracy, NLL, ECE, reliability diagram (deterministic predictor, f0 = 0).
        train = stratified(y_train, train_size, rng)
        test = np.arange(test_size) if test_size == len(x_test) else stratified(y_test, test_size, rng)
        main_info, timing["fit_main"] = fit(client, f"fashion-{tag}", x_train[train], y_train[train], 10, args,
                                            "main")
        t0 = time.time()
        det = client.predict(main_info.model_id, x_test[test])
        timing["predict_main"] = time.time() - t0
        main_scores = scores(det.probs, y_test[test])
        ntkserve.plots.reliability_diagram(det.probs, y_test[test], os.path.join(args.out, "reliability.png"),
                                           title=f"Fashion-MNIST, N={train_size}")
        print(f"  main model on {test_size} test images: accuracy {main_scores['accuracy']:.4f}, "
              f"NLL {main_scores['nll']:.4f}, ECE {main_scores['ece']:.4f} ({timing['predict_main']:.1f} s)",
              flush=True)

        # 2. Uncertainty: a model on unc_train images; clean, noisy and rotated test images in one request
        #    (one batch, so the server factors the training-set matrices once).
        sub = train[:unc_train] if unc_train <= train_size else stratified(y_train, unc_train, rng)
        clean_idx = stratified(y_test, shift_size, rng)
        clean = x_test[clean_idx]
        noisy = np.clip(clean + rng.normal(0.0, args.noise, clean.shape), 0.0, 1.0)
        rotated = rotate(clean, rng, *args.rotation)
        if len(sub) == len(train):
            unc_info, timing["fit_uncertainty"] = main_info, 0.0  # the same training set: the main model
        else:
            client.delete_model(main_info.model_id)
            unc_info, timing["fit_uncertainty"] = fit(client, f"fashion-unc-{tag}", x_train[sub], y_train[sub],
                                                      10, args, "uncertainty")
        t0 = time.time()
        both = np.concatenate([clean, noisy, rotated])
        p = client.predict(unc_info.model_id, both, uncertainty="linearized", batch_rows=len(both))
        timing["predict_linearized_shifts"] = time.time() - t0
        print(f"  linearized uncertainty of {len(both)} images: {timing['predict_linearized_shifts']:.1f} s",
              flush=True)
        client.delete_model(unc_info.model_id)
        parts = {k: slice(i * shift_size, (i + 1) * shift_size) for i, k in enumerate(("clean", "noise", "rotation"))}

        # 3. The unseen class: a model without it; its clean test images (9 classes) vs the held-out class.
        h = args.holdout_class
        keep = sub[y_train[sub] != h]
        remap = np.array([c if c < h else c - 1 for c in range(10)])  # labels 0..8 without h
        others = np.flatnonzero(y_test != h)
        seen_test = others[stratified(y_test[others], shift_size, rng)]
        unseen_test = rng.permutation(np.flatnonzero(y_test == h))[:shift_size]
        ho_info, timing["fit_holdout"] = fit(client, f"fashion-ho-{tag}", x_train[keep], remap[y_train[keep]], 9,
                                             args, f"without class {h} ({CLASSES[h]})")
        t0 = time.time()
        both_ho = np.concatenate([x_test[seen_test], x_test[unseen_test]])
        q = client.predict(ho_info.model_id, both_ho, uncertainty="linearized", batch_rows=len(both_ho))
        timing["predict_linearized_holdout"] = time.time() - t0
        print(f"  linearized uncertainty of {len(both_ho)} images: {timing['predict_linearized_holdout']:.1f} s",
              flush=True)
        client.delete_model(ho_info.model_id)

    # 4. The table: per condition accuracy (where labels apply), MI, and AUROC of MI / entropy vs clean.
    labels_clean = y_test[clean_idx]
    rows = {}

    def row(name, pred, sl, labels, ref_pred, ref_sl):
        mi, ent = pred.mutual_info[sl], pred.entropy[sl]
        r = {"n": int(mi.size), "mi_mean": float(mi.mean()), "mi_median": float(np.median(mi)),
             "entropy_mean": float(ent.mean())}
        if labels is not None:
            r.update(scores(pred.probs[sl], labels))
        if ref_pred is not None:
            ref_mi, ref_ent = ref_pred.mutual_info[ref_sl], ref_pred.entropy[ref_sl]
            y = np.r_[np.zeros(ref_mi.size), np.ones(mi.size)]
            r["auroc_mi"] = float(roc_auc_score(y, np.r_[ref_mi, mi]))
            r["auroc_entropy"] = float(roc_auc_score(y, np.r_[ref_ent, ent]))
        rows[name] = r

    row("clean", p, parts["clean"], labels_clean, None, None)
    row("noise", p, parts["noise"], labels_clean, p, parts["clean"])
    row("rotation", p, parts["rotation"], labels_clean, p, parts["clean"])
    n_seen = len(seen_test)
    row("clean (9-class model)", q, slice(0, n_seen), remap[y_test[seen_test]], None, None)
    row(f"unseen class ({CLASSES[h]})", q, slice(n_seen, None), None, q, slice(0, n_seen))

    mi_histograms(p.mutual_info[parts["clean"]], {
        f"noise sd {args.noise:g}": (p.mutual_info[parts["clean"]], p.mutual_info[parts["noise"]],
                                     rows["noise"]["auroc_mi"]),
        f"rotation {args.rotation[0]:g}-{args.rotation[1]:g} deg": (
            p.mutual_info[parts["clean"]], p.mutual_info[parts["rotation"]], rows["rotation"]["auroc_mi"]),
        f"unseen {CLASSES[h]}": (q.mutual_info[:n_seen], q.mutual_info[n_seen:],
                                 rows[f"unseen class ({CLASSES[h]})"]["auroc_mi"]),
    }, os.path.join(args.out, "mutual_info_shifts.png"))
    examples_strip([("clean", clean), ("noise", noisy), ("rotation", rotated), (CLASSES[h], x_test[unseen_test])],
                   os.path.join(args.out, "shifts.png"))

    load_avg = os.getloadavg()[0]
    total = time.time() - started
    print()
    print(f"main model (N = {train_size}, lambda = {args.lam:g}) on {test_size} test images, deterministic "
          f"predictor: accuracy {main_scores['accuracy']:.4f}  NLL {main_scores['nll']:.4f}  "
          f"ECE {main_scores['ece']:.4f}")
    print(f"linearized uncertainty (models on N = {unc_train}):")
    print(f"{'condition':26s} {'n':>5s} {'accuracy':>9s} {'NLL':>7s} {'ECE':>7s} {'mean MI':>10s} "
          f"{'median MI':>10s} {'AUROC MI':>9s} {'AUROC H':>8s}")
    fmt = lambda r, k, f: format(r[k], f) if k in r else "-"
    for name, r in rows.items():
        print(f"{name:26s} {r['n']:5d} {fmt(r, 'accuracy', '9.4f'):>9s} {fmt(r, 'nll', '7.3f'):>7s} "
              f"{fmt(r, 'ece', '7.3f'):>7s} {r['mi_mean']:10.3e} {r['mi_median']:10.3e} "
              f"{fmt(r, 'auroc_mi', '9.4f'):>9s} {fmt(r, 'auroc_entropy', '8.4f'):>8s}")
    print("(AUROC MI / H: mutual information / predictive entropy separating the condition from its clean "
          "images; 0.5 = no better than chance)")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()) +
          f"; total {total:.1f} s; load average {load_avg:.2f} on {os.cpu_count()} CPUs")

    results = {
        "example": "fashion_mnist",
        "date": time.strftime("%Y-%m-%d"),
        "host": {"cpus": os.cpu_count(), "load_average_1m": round(load_avg, 2), "python": platform.python_version(),
                 "backend": backend},
        "data": {"scaling": "pixels / 255 in [0, 1], no standardization", "train_size": train_size,
                 "test_size": test_size, "uncertainty_train_size": unc_train, "shift_size": shift_size,
                 "noise_std": args.noise, "rotation_degrees": list(args.rotation),
                 "holdout_class": {"index": h, "name": CLASSES[h]}, "seed": args.seed},
        "model": {"lambda": args.lam, "depth": args.depth, "w_std": args.w_std, "b_std": args.b_std,
                  "activation": "relu", "main_solver": main_info.solver_used,
                  "main_newton_steps": int(main_info.newton_steps), "main_converged": bool(main_info.converged)},
        "main": main_scores,
        "uncertainty": rows,
        "seconds": {k: round(v, 2) for k, v in timing.items()} | {"total": round(total, 2)},
        "files": ["reliability.png", "mutual_info_shifts.png", "shifts.png"],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}/results.json, reliability.png, mutual_info_shifts.png, shifts.png")
    return results


if __name__ == "__main__":
    main()
