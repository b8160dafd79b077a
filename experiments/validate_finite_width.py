#!/usr/bin/env python3
"""Validation of ntkserve against the finite-width claim: a wide network trained by gradient-based
optimization matches the NTK predictor started from the same initialization, with a gap ~ 1/sqrt(width).

Network: MLP in NTK parameterization (SPEC section 1; neural-tangents stax.Dense(parameterization='ntk')),
    z = W_std * (a @ W) / sqrt(n_in) + b_std * b,   W, b ~ N(0, 1),
depth L hidden ReLU layers, readout Dense(C) with the same stds, float64 throughout.  The trainable parameters
are the standard-normal W, b themselves, so the empirical NTK of this network converges to ntkctl's NTK.

Loss: (1/N) sum_i CE(y_i, softmax f(x_i)) + (lambda/2) ||theta - theta0||^2 (SPEC section 2).
  case A: lambda > 0, one-hot labels, minimized to convergence by L-BFGS (strong Wolfe).
  case B: lambda = 0, label smoothing eps, plain full-batch gradient descent from theta0.
For every (case, width, seed) the network's initial outputs f0 on train and test are written as N x C and
T x C float64 .npy files and passed to `ntkctl fit --f0` and `ntkctl predict --f0`.

Run through experiments/validate_finite_width.sh; `--help` lists the knobs.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ntkctl", default="build/bin/ntkctl")
    p.add_argument("--work-dir", default="out/validate", help="scratch .npy / model files and results.json")
    p.add_argument("--doc-dir", default="docs", help="where validation.png and validation_tables.md go")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", default="256,512,1024,2048,4096", help="case A widths")
    p.add_argument("--widths-b", default="256,512,1024,2048", help="case B widths")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--activation", default="relu", choices=["relu", "gelu"],
                   help="gelu (x Phi(x), exact erf form) is smooth: a check that ReLU's kinks are not what limits")
    p.add_argument("--w-std", type=float, default=1.5)
    p.add_argument("--b-std", type=float, default=0.1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--n-train", type=int, default=200, help="case A training points (stratified)")
    p.add_argument("--n-train-b", type=int, default=50, help="case B training points (subset of case A's)")
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--lambdas", default="1e-2", help="case A lambdas, comma separated")
    p.add_argument("--gtol", type=float, default=1e-7, help="case A: stop L-BFGS at ||grad||_2 below this")
    p.add_argument("--max-evals", type=int, default=200, help="case A: L-BFGS function evaluation budget")
    p.add_argument("--eps", type=float, default=0.1, help="case B label smoothing")
    p.add_argument("--steps-b", type=int, default=1500, help="case B gradient descent steps")
    p.add_argument("--lr-factor", type=float, default=1.0,
                   help="case B learning rate = lr_factor / sharpness, sharpness = largest eigenvalue of the "
                        "linearized loss Hessian in function space (stability needs lr_factor < 2)")
    p.add_argument("--fixed-lr", dest="adaptive_lr", action="store_false",
                   help="case B: keep the learning rate at its value at initialization instead of re-estimating "
                        "the sharpness every 50 steps (it falls as softmax f -> Y, by about 10x here)")
    p.add_argument("--lr-max-factor", type=float, default=25.0,
                   help="case B: cap the learning rate at this / lambda_max(Theta/N)")
    p.add_argument("--cases", default="A,B")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild the tables and the plot from WORK_DIR/results.json (written after every run)")
    p.add_argument("--merge", action="append", default=[], metavar="RESULTS_JSON",
                   help="with --report-only: add the runs of further results.json files (same configuration, "
                        "other widths/seeds/cases)")
    p.add_argument("--ntk-checks-only", action="store_true",
                   help="only run the two function-space checks of ntkctl (see ntk_checks) and write ntk_checks.json")
    p.add_argument("--quick", action="store_true", help="tiny smoke test (widths 32,64; few steps; 1 seed)")
    a = p.parse_args()
    if a.quick:
        a.widths, a.widths_b, a.seeds, a.steps_b, a.max_evals = "32,64", "32,64", 1, 200, 200
        a.n_train, a.n_train_b, a.n_test = 60, 30, 30
    return a


ARGS = parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))
import torch  # noqa: E402  (after OMP_NUM_THREADS)

torch.set_num_threads(ARGS.threads)
torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------------------------- data
def load_data(a):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    keep = y < a.classes
    x, y = x[keep], y[keep].astype(np.int64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])  # x.x/d = 1
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, train_size=a.n_train, random_state=0, stratify=y)
    x_te, _, y_te, _ = train_test_split(x_rest, y_rest, train_size=a.n_test, random_state=1, stratify=y_rest)
    # case B: a stratified subset of case A's training set (the first n_train_b / C of every class)
    per = a.n_train_b // a.classes
    idx_b = np.sort(np.concatenate([np.flatnonzero(y_tr == c)[:per] for c in range(a.classes)]))
    return dict(x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te, idx_b=idx_b)


# ----------------------------------------------------------------------------------------------- network
def init_params(d, width, depth, classes, seed):
    g = torch.Generator().manual_seed(seed)
    dims = [d] + [width] * depth + [classes]
    params = []
    for n_in, n_out in zip(dims[:-1], dims[1:]):
        params.append(torch.randn(n_in, n_out, generator=g))
        params.append(torch.randn(n_out, generator=g))
    return params


def forward(params, x, w_std, b_std):
    """stax.serial(Dense(n, W_std, b_std), Relu, ..., Dense(C, W_std, b_std)), parameterization='ntk'."""
    a = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        a = (w_std / math.sqrt(w.shape[0])) * (a @ w) + b_std * b
        if i < n_layers - 1:
            a = torch.relu(a) if ARGS.activation == "relu" else torch.nn.functional.gelu(a)
    return a


def objective(params, params0, x, targets, lam, w_std, b_std):
    """The loss by autograd (reference for loss_and_grad; used by the tests at the bottom)."""
    f = forward(params, x, w_std, b_std)
    ce = -(targets * torch.log_softmax(f, dim=1)).sum(dim=1).mean()
    if lam > 0:
        reg = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, params0))
        return ce + 0.5 * lam * reg
    return ce


def loss_and_grad(params, params0, x, targets, lam, w_std, b_std, lr=None):
    """(1/N) sum CE + (lam/2) ||theta - theta0||^2 and its gradient, backpropagated by hand (about 2x faster than
    autograd at these shapes on 2 cores; checked against autograd to 1e-15).  With lr given, instead of returning
    the gradient it takes the gradient descent step theta -= lr * grad in place (fused into the weight-gradient
    matrix products), which is what makes case B affordable."""
    n_layers = len(params) // 2
    acts, pre, a = [x], [], x
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        z = torch.addmm(b, a, w, beta=b_std, alpha=w_std / math.sqrt(w.shape[0]))
        if i < n_layers - 1:
            pre.append(z)
            a = torch.relu(z) if ARGS.activation == "relu" else torch.nn.functional.gelu(z)
            acts.append(a)
        else:
            a = z
    logp = torch.log_softmax(a, dim=1)
    loss = float(-(targets * logp).sum(dim=1).mean())
    g = (torch.exp(logp) - targets) / x.shape[0]  # d loss / d f
    grads = [None] * len(params)
    if lam > 0:
        diffs = [p - p0 for p, p0 in zip(params, params0)]
        loss += 0.5 * lam * sum(float((d * d).sum()) for d in diffs)
    for i in reversed(range(n_layers)):
        w, b = params[2 * i], params[2 * i + 1]
        s = w_std / math.sqrt(w.shape[0])
        g_prev = (g @ w.t()) * s if i > 0 else None
        if lr is None:
            if lam > 0:
                grads[2 * i] = torch.addmm(diffs[2 * i], acts[i].t(), g, beta=lam, alpha=s)
                grads[2 * i + 1] = torch.add(g.sum(0) * b_std, diffs[2 * i + 1], alpha=lam)
            else:
                grads[2 * i] = torch.mm(acts[i].t(), g).mul_(s)
                grads[2 * i + 1] = g.sum(0) * b_std
        else:
            assert lam == 0
            w.addmm_(acts[i].t(), g, alpha=-lr * s)
            b.add_(g.sum(0), alpha=-lr * b_std)
        if i > 0:
            z = pre[i - 1]
            if ARGS.activation == "relu":
                g = g_prev * (z > 0)
            else:  # d/dz z Phi(z) = Phi(z) + z phi(z)
                g = g_prev * (0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    return loss, grads


def grad_norm(params):
    return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))


def self_test():
    """loss_and_grad against autograd, and one fused gradient descent step against the unfused one."""
    p0 = init_params(7, 16, ARGS.depth, 4, seed=3)
    g_ = torch.Generator().manual_seed(4)
    p = [q + 0.3 * torch.randn(q.shape, generator=g_) for q in p0]
    x, t = torch.randn(9, 7, generator=g_), torch.softmax(torch.randn(9, 4, generator=g_), 1)
    for lam in (0.0, 0.05):
        pa = [q.clone().requires_grad_(True) for q in p]
        la = objective(pa, p0, x, t, lam, ARGS.w_std, ARGS.b_std)
        la.backward()
        lm, gm = loss_and_grad(p, p0, x, t, lam, ARGS.w_std, ARGS.b_std)
        err = max(float((q.grad - g).abs().max()) for q, g in zip(pa, gm))
        assert abs(float(la) - lm) < 1e-12 and err < 1e-12, (lam, float(la), lm, err)
    q = [r.clone() for r in p]
    loss_and_grad(q, None, x, t, 0.0, ARGS.w_std, ARGS.b_std, lr=0.3)
    _, gm = loss_and_grad(p, None, x, t, 0.0, ARGS.w_std, ARGS.b_std)
    err = max(float((r - 0.3 * g - s_).abs().max()) for r, g, s_ in zip(p, gm, q))
    assert err < 1e-12, err


def train_lbfgs(params, params0, x, targets, lam, a, x_te):
    """L-BFGS (strong Wolfe) on the regularized loss.  With ReLU the loss is only piecewise smooth (a hidden unit
    switching at a training point is a kink), so ||grad|| does not go to zero: the run stops at ||grad|| < gtol,
    at the evaluation budget, or when two fresh L-BFGS restarts in a row make no progress.  The test logits are
    recorded after every outer iteration; `opt_change` is how much they still moved over the last half of the
    evaluations (an indication of the optimization error left, not a bound)."""
    params = [p.clone() for p in params]
    state = {"evals": 0}

    def make_opt():  # history 10: L-BFGS keeps 2 x history copies of all parameters (17M at width 4096)
        return torch.optim.LBFGS(params, lr=1.0, max_iter=20, max_eval=25, history_size=10, tolerance_grad=0.0,
                                 tolerance_change=0.0, line_search_fn="strong_wolfe")

    opt = make_opt()

    def closure():
        loss, grads = loss_and_grad(params, params0, x, targets, lam, a.w_std, a.b_std)
        for p, g in zip(params, grads):
            p.grad = g
        state["evals"] += 1
        return loss

    gn, last, stalls, restarts = float("inf"), float("inf"), 0, 0
    snaps = []
    while state["evals"] < a.max_evals:
        opt.step(closure)
        loss = float(closure())  # gradient at the current iterate
        gn = grad_norm(params)
        with torch.no_grad():
            snaps.append((state["evals"], forward(params, x_te, a.w_std, a.b_std)))
        if not math.isfinite(gn) or gn < a.gtol:
            break
        if loss >= last - 1e-14 * abs(last):  # no progress: the line search got stuck at a kink
            stalls += 1
            if stalls >= 2:
                break
            opt, restarts = make_opt(), restarts + 1
        else:
            stalls = 0
        last = min(last, loss)
    f_te = snaps[-1][1]
    half = next(f for e, f in snaps if e >= state["evals"] / 2)
    return [p.detach() for p in params], dict(evals=state["evals"], grad_norm=gn, loss=loss, restarts=restarts,
                                              opt_change=float((f_te - half).abs().max()))


def train_gd(params, x, targets, lrs, a):
    """Plain full-batch gradient descent on the mean cross-entropy, step k with learning rate lrs[k]."""
    params = [p.clone() for p in params]
    history = []
    steps = len(lrs)
    for k in range(steps):
        loss, _ = loss_and_grad(params, None, x, targets, 0.0, a.w_std, a.b_std, lr=float(lrs[k]))
        if k in (0, steps // 10, steps // 2):
            history.append((k, loss))
    loss, grads = loss_and_grad(params, None, x, targets, 0.0, a.w_std, a.b_std)
    gn = math.sqrt(sum(float((g * g).sum()) for g in grads))
    history.append((steps, loss))
    return params, dict(history=history, loss=loss, grad_norm=gn)


def sharpness(theta_n, p, iters=30):
    """Largest eigenvalue of (Theta/N (x) I) W, W = blockdiag(diag p_i - p_i p_i^T): the curvature of the
    linearized loss in function space, i.e. the stability limit of gradient descent is lr < 2 / sharpness."""
    v = np.random.RandomState(0).randn(*p.shape)
    lam = 0.0
    for _ in range(iters):
        w = p * v - p * (p * v).sum(1, keepdims=True)  # W v, row-wise
        u = theta_n @ w
        # symmetric form: W^1/2 Theta W^1/2 has the same spectrum; Rayleigh quotient in the W-inner product
        lam = float((u * w).sum() / max((v * w).sum(), 1e-300))
        v = u / np.linalg.norm(u)
    return lam


def linearized_gd(theta, theta_te, f0_tr, f0_te, Y, steps, lr_max, lr_factor, adaptive):
    """Gradient descent of the infinite-width linearized network in function space (ntkctl's NTK):
    f(X) -= lr/N Theta (softmax f(X) - Y), f(x*) -= lr/N Theta(x*,X) (softmax f(X) - Y).
    lr_k = min(lr_max, lr_factor / sharpness(f_k)), at k = 0 only or, with adaptive, every 50 steps; returns the
    learning rates so the finite network can take exactly the same steps."""
    N = theta.shape[0]
    g_tr, g_te = f0_tr.copy(), f0_te.copy()
    lrs = np.empty(steps)
    lr = lr_max
    for k in range(steps):
        p = softmax(g_tr)
        if k == 0 or (adaptive and k % 50 == 0):
            lr = min(lr_max, lr_factor / sharpness(theta / N, p))
        lrs[k] = lr
        r = p - Y
        g_tr -= (lr / N) * (theta @ r)
        g_te -= (lr / N) * (theta_te @ r)
    return g_tr, g_te, lrs


# ----------------------------------------------------------------------------------------------- ntkctl
def arch_flags(a):
    return ["--depth", str(a.depth), "--activation", a.activation, "--w-std", repr(a.w_std), "--b-std", repr(a.b_std),
            "--dtype", "float64"]


def ntkctl(*args):
    cmd = [ARGS.ntkctl, *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def ntk_fit_predict(tag, x_tr_path, labels_path, f0_tr, x_te_path, f0_te, lam, eps, time_t=None, lr=None):
    d = os.path.join(ARGS.work_dir, tag)
    os.makedirs(d, exist_ok=True)
    f0_tr_path, f0_te_path = os.path.join(d, "f0_train.npy"), os.path.join(d, "f0_test.npy")
    np.save(f0_tr_path, np.ascontiguousarray(f0_tr, dtype=np.float64))
    np.save(f0_te_path, np.ascontiguousarray(f0_te, dtype=np.float64))
    model = os.path.join(d, "model.ntk")
    if os.path.exists(model):
        os.remove(model)
    args = ["fit", "--x", x_tr_path, "--labels", labels_path, "--classes", str(ARGS.classes), "--lambda", repr(lam),
            "--out", model, *arch_flags(ARGS), "--f0", f0_tr_path, "--backend", "cpu", "--threads",
            str(ARGS.threads), "--quiet"]
    if eps:
        args += ["--label-smoothing", repr(eps)]
    if time_t is not None:
        args += ["--time", repr(time_t), "--lr", repr(lr)]
    ntkctl(*args)
    pred = os.path.join(d, "pred")
    os.makedirs(pred, exist_ok=True)
    ntkctl("predict", "--model", model, "--x", x_te_path, "--f0", f0_te_path, "--out-dir", pred, "--backend", "cpu",
           "--threads", str(ARGS.threads))
    return np.load(os.path.join(pred, "logits.npy")), np.load(os.path.join(pred, "probs.npy"))


def ntk_kernel(x1_path, x2_path, out_path):
    args = ["kernel", "--x1", x1_path, "--kernel", "ntk", "--out", out_path, *arch_flags(ARGS), "--backend", "cpu"]
    if x2_path:
        args += ["--x2", x2_path]
    ntkctl(*args)
    return np.load(out_path)


def softmax(f):
    e = np.exp(f - f.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def gaps(net_logits, ntk_logits, ntk_probs, y_te):
    net_probs = softmax(net_logits)
    g = np.abs(net_logits - ntk_logits)
    return dict(max_logit_gap=float(g.max()), mean_logit_gap=float(g.mean()),
                max_prob_gap=float(np.abs(net_probs - ntk_probs).max()),
                acc_net=float((net_logits.argmax(1) == y_te).mean()),
                acc_ntk=float((ntk_logits.argmax(1) == y_te).mean()))


# ----------------------------------------------------------------------------------------------- main
def main():
    a = ARGS
    if a.report_only:
        with open(os.path.join(a.work_dir, "results.json")) as fh:
            results = json.load(fh)
        for path in a.merge:
            with open(path) as fh:
                other = json.load(fh)
            results["runs"] += other["runs"]
            results.setdefault("case_b", other.get("case_b"))
            if "case_b" in other and results["case_b"] is not other["case_b"]:
                results["case_b"]["times"] += other["case_b"]["times"]
        if results.get("case_b") is None:
            results.pop("case_b", None)
        report(results)
        return
    self_test()
    os.makedirs(a.work_dir, exist_ok=True)
    if a.ntk_checks_only:
        ntk_checks(a)
        return
    t_start = time.time()
    data = load_data(a)
    paths = {}
    for name, arr in [("x_tr", data["x_tr"]), ("y_tr", data["y_tr"]), ("x_te", data["x_te"]),
                      ("x_tr_b", data["x_tr"][data["idx_b"]]), ("y_tr_b", data["y_tr"][data["idx_b"]])]:
        paths[name] = os.path.join(a.work_dir, name + ".npy")
        np.save(paths[name], arr)
    x_te = torch.from_numpy(data["x_te"])
    y_te = data["y_te"]
    C = a.classes
    cases = a.cases.split(",")
    results = dict(config=vars(a), runs=[], command=" ".join(sys.argv),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=dict(platform=platform.platform(), cpu=cpu_name(),
                   torch=torch.__version__, numpy=np.__version__, python=platform.python_version()))

    if "A" in cases:
        x = torch.from_numpy(data["x_tr"])
        targets = torch.nn.functional.one_hot(torch.from_numpy(data["y_tr"]), C).double()
        for lam in [float(s) for s in a.lambdas.split(",")]:
            for width in [int(w) for w in a.widths.split(",")]:
                for seed in range(a.seeds):
                    t0 = time.time()
                    p0 = init_params(x.shape[1], width, a.depth, C, seed=1000 * width + seed)
                    with torch.no_grad():
                        f0_tr, f0_te = forward(p0, x, a.w_std, a.b_std), forward(p0, x_te, a.w_std, a.b_std)
                    p, info = train_lbfgs(p0, p0, x, targets, lam, a, x_te)
                    with torch.no_grad():
                        f_te = forward(p, x_te, a.w_std, a.b_std).numpy()
                    t_train = time.time() - t0
                    ntk_l, ntk_p = ntk_fit_predict(f"A_lam{lam:g}_w{width}_s{seed}", paths["x_tr"], paths["y_tr"],
                                                   f0_tr.numpy(), paths["x_te"], f0_te.numpy(), lam, 0.0)
                    r = dict(case="A", lam=lam, width=width, seed=seed, train_seconds=t_train, **info,
                             **gaps(f_te, ntk_l, ntk_p, y_te))
                    results["runs"].append(r)
                    log(r)
                    save(results)

    if "B" in cases:
        x = torch.from_numpy(data["x_tr"][data["idx_b"]])
        yb = data["y_tr"][data["idx_b"]]
        N = x.shape[0]
        targets = (1 - a.eps) * torch.nn.functional.one_hot(torch.from_numpy(yb), C).double() + a.eps / C
        Y = targets.numpy()
        theta = ntk_kernel(paths["x_tr_b"], None, os.path.join(a.work_dir, "theta_b.npy"))
        theta_te = ntk_kernel(paths["x_te"], paths["x_tr_b"], os.path.join(a.work_dir, "theta_te_b.npy"))
        ev = np.linalg.eigvalsh(theta / N)
        lr_max = a.lr_max_factor / ev[-1]
        results["case_b"] = dict(N=N, lambda_max=float(ev[-1]), lambda_min=float(ev[0]), steps=a.steps_b,
                                 adaptive=a.adaptive_lr, lr_factor=a.lr_factor, lr_max=lr_max, times=[])
        print(f"case B: N={N}, eig(Theta/N) in [{ev[0]:.3e}, {ev[-1]:.3e}], 2/lambda_max = {2 / ev[-1]:.4f}, "
              f"lr cap {lr_max:.4f}, {a.steps_b} steps", flush=True)
        for width in [int(w) for w in a.widths_b.split(",")]:
            for seed in range(a.seeds):
                t0 = time.time()
                p0 = init_params(x.shape[1], width, a.depth, C, seed=1000 * width + seed + 500)
                with torch.no_grad():
                    f0_tr, f0_te = forward(p0, x, a.w_std, a.b_std).numpy(), forward(p0, x_te, a.w_std, a.b_std).numpy()
                # the infinite-width linearized network, same f0, same steps: fixes the learning-rate schedule
                lin_tr, lin_te, lrs = linearized_gd(theta, theta_te, f0_tr, f0_te, Y, a.steps_b, lr_max,
                                                    a.lr_factor, a.adaptive_lr)
                p, info = train_gd(p0, x, targets, lrs, a)
                with torch.no_grad():
                    f_te = forward(p, x_te, a.w_std, a.b_std).numpy()
                    f_tr = forward(p, x, a.w_std, a.b_std).numpy()
                t_train = time.time() - t0
                tag = f"B_w{width}_s{seed}"
                inf_l, inf_p = ntk_fit_predict(tag, paths["x_tr_b"], paths["y_tr_b"], f0_tr, paths["x_te"], f0_te,
                                               0.0, a.eps)
                # how far training got: train logits vs the optimum log Y + per-sample constant (class sums are
                # not exactly conserved at finite width, so centre both)
                logy = np.log(Y) - np.log(Y).mean(1, keepdims=True)
                r = dict(case="B", width=width, seed=seed, train_seconds=t_train, time=float(lrs.sum()),
                         lr_first=float(lrs[0]), lr_last=float(lrs[-1]), **info,
                         train_logit_err=float(np.abs(f_tr - f_tr.mean(1, keepdims=True) - logy).max()),
                         lin_train_logit_err=float(np.abs(lin_tr - lin_tr.mean(1, keepdims=True) - logy).max()),
                         inf=gaps(f_te, inf_l, inf_p, y_te), fin=gaps(f_te, lin_te, softmax(lin_te), y_te),
                         lin_vs_inf=float(np.abs(lin_te - inf_l).max()))
                results["case_b"]["times"].append(r["time"])
                results["runs"].append(r)
                log(r)
                save(results)

    results["total_seconds"] = time.time() - t_start
    for c in ("A", "B"):
        results[f"seconds_{c}"] = sum(r["train_seconds"] for r in results["runs"] if r["case"] == c)
    save(results)
    ntk_checks(a)
    report(results)
    print(f"total {results['total_seconds']:.0f} s", flush=True)


def ntk_checks(a):
    """Two checks of ntkctl's solutions that need no network, with a nonzero f0 (an NNGP draw from ntkctl's own
    NNGP kernel) and ntkctl's NTK matrices:
      lambda > 0: ntkctl's train logits satisfy the fixed point f = f0 - Theta (softmax f - Y) / (N lambda);
      lambda = 0: function-space gradient descent run long (uncapped adaptive learning rate) reaches ntkctl's
                  closed-form test logits."""
    data = load_data(a)
    d = os.path.join(a.work_dir, "checks")
    os.makedirs(d, exist_ok=True)
    C, out = a.classes, {}
    rng = np.random.RandomState(7)
    for case, idx in [("A", np.arange(len(data["y_tr"]))), ("B", data["idx_b"])]:
        xp, yp, tp = os.path.join(d, f"x_{case}.npy"), os.path.join(d, f"y_{case}.npy"), os.path.join(d, "x_te.npy")
        np.save(xp, data["x_tr"][idx]); np.save(yp, data["y_tr"][idx]); np.save(tp, data["x_te"])
        ntkctl("kernel", "--x1", xp, "--kernel", "nngp", "--out", os.path.join(d, "nngp.npy"), *arch_flags(a))
        G = np.load(os.path.join(d, "nngp.npy"))
        N = len(idx)
        f0 = np.linalg.cholesky(G + 1e-10 * np.trace(G) / N * np.eye(N)) @ rng.randn(N, C)
        theta = ntk_kernel(xp, None, os.path.join(d, "theta.npy"))
        if case == "A":
            lam = float(a.lambdas.split(",")[0])
            Y = np.eye(C)[data["y_tr"][idx]]
            f_tr, _ = ntk_fit_predict("checks/A", xp, yp, f0, xp, f0, lam, 0.0)
            # predict evaluates Theta(x*, X) with x* = X as a cross kernel: on the diagonal the ReLU arc-cosine
            # formula sees sqrt(rounding noise) there (about 1e-8 relative), so check with both matrices
            xp2 = os.path.join(d, "x_A_copy.npy")
            np.save(xp2, data["x_tr"][idx])
            theta_x = ntk_kernel(xp, xp2, os.path.join(d, "theta_cross.npy"))
            res = np.abs(f_tr - f0 + theta @ (softmax(f_tr) - Y) / (N * lam)).max()
            res_x = np.abs(f_tr - f0 + theta_x @ (softmax(f_tr) - Y) / (N * lam)).max()
            out["fixed_point_residual_lambda"] = dict(
                lam=lam, residual_symmetric_kernel=float(res), residual_cross_kernel=float(res_x),
                kernel_diag_symmetric_vs_cross=float(np.abs(np.diag(theta) - np.diag(theta_x)).max()),
                max_abs_logit=float(np.abs(f_tr).max()))
        else:
            Y = (1 - a.eps) * np.eye(C)[data["y_tr"][idx]] + a.eps / C
            theta_te = ntk_kernel(tp, xp, os.path.join(d, "theta_te.npy"))
            f0_te = np.zeros((len(data["y_te"]), C))
            inf_l, _ = ntk_fit_predict("checks/B", xp, yp, f0, tp, f0_te, 0.0, a.eps)
            ev = np.linalg.eigvalsh(theta / N)
            res = {}
            for steps in (4000, 16000):
                _, g_te, lrs = linearized_gd(theta, theta_te, f0, f0_te, Y, steps, 1e6 / ev[-1], a.lr_factor, True)
                res[str(steps)] = dict(time=float(lrs.sum()), max_test_logit_diff=float(np.abs(g_te - inf_l).max()))
            out["long_gd_vs_closed_form_lambda0"] = res
    print("ntkctl checks:", json.dumps(out), flush=True)
    with open(os.path.join(a.work_dir, "ntk_checks.json"), "w") as fh:
        json.dump(out, fh, indent=1)


def save(results):
    path = os.path.join(ARGS.work_dir, "results.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(path + ".tmp", path)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def log(r):
    keys = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items() if k != "history"}
    print(json.dumps(keys), flush=True)


# ----------------------------------------------------------------------------------------------- report
def slope(ws, ys):
    ws, ys = np.log(np.asarray(ws, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(ws, ys, 1)[0])


def summarize(runs, get):
    widths = sorted({r["width"] for r in runs})
    rows = []
    for w in widths:
        rs = [get(r) for r in runs if r["width"] == w]
        rows.append((w, len(rs), {k: float(np.mean([x[k] for x in rs])) for k in rs[0]},
                     {k: float(np.std([x[k] for x in rs])) for k in rs[0]}))
    return rows


def table(rows, extra_cols=()):
    head = "| width | seeds | max \\|logit gap\\| | mean \\|logit gap\\| | max \\|prob gap\\| | acc net | acc NTK |"
    head += "".join(f" {h} |" for _, _, h in extra_cols)
    lines = [head, "|" + "---|" * (7 + len(extra_cols))]
    for w, n, m, s in rows:
        line = (f"| {w} | {n} | {m['max_logit_gap']:.4f} ± {s['max_logit_gap']:.4f} | {m['mean_logit_gap']:.4f} | "
                f"{m['max_prob_gap']:.4f} | {m['acc_net']:.3f} | {m['acc_ntk']:.3f} |")
        line += "".join(f" {fmt.format(m[c])} |" for c, fmt, _ in extra_cols)
        lines.append(line)
    sl = {k: slope([r[0] for r in rows], [r[2][k] for r in rows]) for k in
          ("max_logit_gap", "mean_logit_gap", "max_prob_gap")}
    lines.append("")
    lines.append(f"log-log slope vs width: max logit gap {sl['max_logit_gap']:+.3f}, mean logit gap "
                 f"{sl['mean_logit_gap']:+.3f}, max prob gap {sl['max_prob_gap']:+.3f} (1/sqrt(width): -0.5)")
    return "\n".join(lines), sl


def report(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    series = []
    runs_a = [r for r in results["runs"] if r["case"] == "A"]
    for lam in sorted({r["lam"] for r in runs_a}, reverse=True):
        rs = [r for r in runs_a if r["lam"] == lam]
        rows = summarize(rs, lambda r: {k: r[k] for k in ("max_logit_gap", "mean_logit_gap", "max_prob_gap",
                                                          "acc_net", "acc_ntk", "grad_norm", "opt_change",
                                                          "evals", "train_seconds")})
        t, sl = table(rows, [("grad_norm", "{:.1e}", "final \\|\\|grad\\|\\|"),
                             ("opt_change", "{:.1e}", "test-logit change over last half of evals"),
                             ("evals", "{:.0f}", "L-BFGS evals"), ("train_seconds", "{:.1f}", "train s")])
        out += [f"### Case A: lambda = {lam:g}, one-hot labels, N = {results['config']['n_train']}, L-BFGS "
                f"(at most {results['config']['max_evals']} evaluations; ReLU kinks stop it short of ||grad|| = 0)",
                "", t, ""]
        series.append((f"A: λ={lam:g}, one-hot, L-BFGS", rows, "o-"))
    runs_b = [r for r in results["runs"] if r["case"] == "B"]
    if runs_b:
        cb = results["case_b"]
        flat = lambda key: (lambda r: dict(r[key], grad_norm=r["grad_norm"], train_logit_err=r["train_logit_err"],
                                           lin_train_logit_err=r["lin_train_logit_err"],
                                           lin_vs_inf=r["lin_vs_inf"], train_seconds=r["train_seconds"],
                                           time=r["time"]))
        hdr = (f"N = {cb['N']} training points, eigenvalues of Theta/N in [{cb['lambda_min']:.3e}, "
               f"{cb['lambda_max']:.3e}] (2 / lambda_max = {2 / cb['lambda_max']:.3f}), {cb['steps']} steps, "
               f"learning rate {'re-estimated every 50 steps as' if cb['adaptive'] else 'fixed at'} "
               f"{cb['lr_factor']:g} / sharpness, capped at {cb['lr_max']:.3f}; "
               f"time sum(lr) = {min(cb['times']):.0f} .. {max(cb['times']):.0f}")
        for key, title, style in [
                ("fin", "vs the infinite-width linearized network after the same steps (ntkctl kernel)", "s-"),
                ("inf", "vs ntkctl fit/predict (lambda = 0 closed form, t = infinity)", "^--")]:
            rows = summarize(runs_b, flat(key))
            extra = [("grad_norm", "{:.1e}", "final \\|\\|grad\\|\\|"),
                     ("train_logit_err", "{:.3f}", "net train-logit error"),
                     ("lin_train_logit_err", "{:.3f}", "lin. train-logit error"),
                     ("lin_vs_inf", "{:.3f}", "lin.(t) vs closed form, test"), ("train_seconds", "{:.1f}", "train s")]
            t, sl = table(rows, extra)
            out += [f"### Case B: lambda = 0, label smoothing {results['config']['eps']:g}, gradient descent, {title}",
                    "", hdr, "", t, ""]
            series.append((f"B: λ=0, ε={results['config']['eps']:g}, GD, vs " +
                           ("linearized NTK, same steps" if key == "fin" else "ntkctl closed form (t=∞)"), rows, style))
    os.makedirs(ARGS.doc_dir, exist_ok=True)
    with open(os.path.join(ARGS.doc_dir, "validation_tables.md"), "w") as fh:
        fh.write("\n".join(out) + "\n")
    print("\n".join(out))

    cfg = results["config"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for ax, key, name in [(axes[0], "max_logit_gap", "max |logit gap| on test set"),
                          (axes[1], "mean_logit_gap", "mean |logit gap| on test set"),
                          (axes[2], "max_prob_gap", "max |probability gap| on test set")]:
        allw, marked = [], set()
        for label, rows, style in series:
            w = np.array([r[0] for r in rows])
            m = np.array([r[2][key] for r in rows])
            s = np.array([r[3][key] for r in rows])
            allw += list(w)
            ax.errorbar(w, m, yerr=s, fmt=style, capsize=3, label=f"{label} (slope {slope(w, m):+.2f})")
            for wi, mi, ni in zip(w, m, [r[1] for r in rows]):
                if ni < cfg["seeds"] and (wi, ax) not in marked:
                    marked.add((wi, ax))
                    ax.annotate(f"{ni} seed", (wi, mi), textcoords="offset points", xytext=(4, 6), fontsize=7)
        if series:
            w = np.array(sorted(set(allw)), float)
            ref0 = series[0][1][0][2][key]
            ax.plot(w, ref0 * np.sqrt(w[0] / w), "k:", label="∝ 1/sqrt(width)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"trained finite network vs ntkctl NTK predictor (depth {cfg['depth']}, {cfg['activation']}, "
                 f"W_std={cfg['w_std']:g}, b_std={cfg['b_std']:g}, digits; mean ± std over {cfg['seeds']} seeds unless marked)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(ARGS.doc_dir, "validation.png"), dpi=120)


if __name__ == "__main__":
    main()
