"""Shared pieces of bench/compare: data sets, metrics, machine description, timing helpers."""
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS = os.path.join(HERE, "results")
FASHION_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def ntkctl_binary():
    explicit = os.environ.get("NTKCTL")
    if explicit:
        return explicit
    for candidate in (os.path.join(ROOT, "build", "bin", "ntkctl"), "/work/main/build/bin/ntkctl"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("ntkctl not found: set NTKCTL or build the project (build/bin/ntkctl)")


def import_neural_tangents(x64):
    """neural-tangents 0.6.5 imports its TensorFlow bridge at start-up; nothing here uses it (as in
    tests/reference/neural_tangents_test.py)."""
    sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
    import jax

    jax.config.update("jax_enable_x64", bool(x64))
    import neural_tangents as nt

    return jax, nt


# -- data -------------------------------------------------------------------------------------------
def _idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist():
    """(x_train 60000 x 784, y_train, x_test 10000 x 784, y_test), pixels in [0, 1]."""
    p = lambda name: os.path.join(FASHION_DIR, name)
    if not os.path.exists(p("train-images-idx3-ubyte.gz")):
        raise FileNotFoundError(f"Fashion-MNIST not found under {FASHION_DIR}: apt-get install -y dataset-fashion-mnist")
    xtr = _idx(p("train-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float64) / 255.0
    ytr = _idx(p("train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = _idx(p("t10k-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float64) / 255.0
    yte = _idx(p("t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    return xtr, ytr, xte, yte


def standardize(train, *others):
    """Per-feature standardization fitted on the training rows (constant features left at 0)."""
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd < 1e-8] = 1.0
    return [(a - mu) / sd for a in (train,) + others]


def digits_split():
    """All 1797 digits, a fixed stratified split: 1197 train, 600 test (seed 0); pixels / 16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float64) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=600, random_state=0,
                                          stratify=d.target)
    return xtr, ytr, xte, yte


def fashion_split(n_train, n_test, seed=0):
    """The first n_train of a fixed permutation of the 60k training images (nested subsets) and the first
    n_test of a fixed permutation of the 10k test images."""
    xtr, ytr, xte, yte = fashion_mnist()
    rng = np.random.default_rng(seed)
    i = rng.permutation(len(xtr))[:n_train]
    j = rng.permutation(len(xte))[:n_test]
    return xtr[i], ytr[i], xte[j], yte[j]


# -- metrics ----------------------------------------------------------------------------------------
def nll(probs, y):
    p = np.clip(probs[np.arange(len(y)), y], 1e-300, None)
    return float(-np.mean(np.log(p)))


def ece(probs, y, bins=15):
    """Expected calibration error of the top-label confidence, `bins` equal-width bins on (0, 1]."""
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def scores(probs, y):
    probs = np.asarray(probs, dtype=np.float64)
    return {"accuracy": float(np.mean(probs.argmax(axis=1) == y)), "nll": nll(probs, y), "ece": ece(probs, y)}


# -- machine and load -------------------------------------------------------------------------------
def load_average():
    return os.getloadavg()[0]


def wait_for_quiet(threshold=1.5, max_wait=None, poll=15, log=print):
    """Waits (at most max_wait s, default $NTK_COMPARE_MAX_WAIT or 300) for the 1-minute load average to
    drop below threshold; returns the load then."""
    if max_wait is None:
        max_wait = float(os.environ.get("NTK_COMPARE_MAX_WAIT", "300"))
    start = time.monotonic()
    load = load_average()
    while load >= threshold and time.monotonic() - start < max_wait:
        log(f"  load {load:.2f} >= {threshold}: waiting ({time.monotonic() - start:.0f} s so far)")
        time.sleep(poll)
        load = load_average()
    return load


def machine_info():
    info = {"date": time.strftime("%Y-%m-%d"), "time_utc": time.strftime("%H:%M UTC", time.gmtime()),
            "python": platform.python_version(), "vcpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.+)", lscpu)
        info["cpu"] = m.group(1).strip() if m else platform.processor()
        fam = re.search(r"CPU family:\s*(\d+)", lscpu)
        mod = re.search(r"Model:\s*(\d+)", lscpu)
        if fam and mod:
            info["cpu"] += f" (family {fam.group(1)}, model {mod.group(1)})"
        if "avx512f" in lscpu:
            info["cpu"] += ", AVX-512"
        m = re.search(r"Hypervisor vendor:\s*(.+)", lscpu)
        info["hypervisor"] = m.group(1).strip() if m else ""
    except OSError:
        info["cpu"] = platform.processor()
    try:
        mem = open("/proc/meminfo").read()
        info["mem_gib"] = round(int(re.search(r"MemTotal:\s*(\d+)", mem).group(1)) / 2 ** 20, 1)
    except (OSError, AttributeError):
        pass
    try:
        r = subprocess.run([ntkctl_binary(), "kernel", "--help"], capture_output=True, text=True)
        del r
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "x.npy"), np.ones((2, 2)))
            r = subprocess.run([ntkctl_binary(), "kernel", "--x1", os.path.join(tmp, "x.npy"), "--out",
                                os.path.join(tmp, "k.npy")], capture_output=True, text=True,
                               env=dict(os.environ, NTK_LOG_LEVEL="info"))
            m = re.search(r"BLAS: (.+)", r.stderr + r.stdout)
            info["ntk_blas"] = m.group(1).strip() if m else "unknown"
    except (OSError, FileNotFoundError):
        info["ntk_blas"] = "unknown"
    for mod in ("numpy", "scipy", "sklearn", "jax", "jaxlib"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        from importlib.metadata import version

        info["neural_tangents"] = version("neural-tangents")
    except Exception:  # noqa: BLE001
        info["neural_tangents"] = None
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{b['name']} {b.get('version', '')}"
    except Exception:  # noqa: BLE001
        info["numpy_blas"] = "unknown"
    return info


def median(values):
    return float(statistics.median(values))


def save_json(name, obj):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    return path


def load_json(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_ntkctl(args, threads=None, env=None):
    """Runs ntkctl; returns (stdout, seconds from its own "... in X s" / ", X s on" line)."""
    cmd = [ntkctl_binary()] + list(args)
    if threads is not None:
        cmd += ["--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, NTK_LOG_LEVEL="warning", **(env or {})))
    if r.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    m = re.search(r"(?:in|,) ([0-9.]+) s on", r.stdout)
    return r.stdout, (float(m.group(1)) if m else None)
