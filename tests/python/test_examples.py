"""Smoke runs of examples/ on tiny subsets against a real server (the conftest's `server` fixture):
each example runs end to end, writes its files, and its numbers are sane."""
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def example(name):
    """The module examples/NAME/run.py (imported by path: examples/ is not a package)."""
    path = os.path.join(ROOT, "examples", name, "run.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_results(folder):
    with open(os.path.join(folder, "results.json")) as f:
        return json.load(f)


def check_png(folder, name):
    path = os.path.join(folder, name)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert 1000 < os.path.getsize(path) < 200_000, name


def test_digits(server, tmp_path):
    out = str(tmp_path)
    returned = example("digits").main(["--server", server.address, "--out", out, "--train-size", "400",
                                       "--test-size", "150"])
    r = read_results(out)
    assert r == json.loads(json.dumps(returned))
    assert r["data"] == {**r["data"], "train": 400, "test": 150}
    for kind in ("linearized", "deterministic"):
        assert 0.5 < r[kind]["accuracy"] <= 1.0  # chance is 0.1
        assert 0 < r[kind]["nll"] < np.log(10)
        assert 0 <= r[kind]["ece"] < 0.5
    assert r["mutual_info"]["mean"] > 0
    for png in ("reliability.png", "mutual_info.png"):
        check_png(out, png)


def test_fashion_mnist(server, tmp_path):
    fashion = example("fashion_mnist")
    if fashion.find_files() is None:
        pytest.skip(f"Fashion-MNIST IDX files not in {fashion.DATA} (apt-get install dataset-fashion-mnist)")
    out = str(tmp_path)
    returned = fashion.main(["--server", server.address, "--out", out, "--train-size", "300", "--test-size", "200",
                             "--uncertainty-train-size", "300", "--shift-size", "40"])
    r = read_results(out)
    assert r == json.loads(json.dumps(returned))
    assert r["data"]["train_size"] == 300 and r["data"]["test_size"] == 200 and r["data"]["shift_size"] == 40
    assert 0.3 < r["main"]["accuracy"] <= 1.0  # chance is 0.1
    assert 0 < r["main"]["nll"] < np.log(10) and 0 <= r["main"]["ece"] < 0.5
    u = r["uncertainty"]
    assert set(u) == {"clean", "noise", "rotation", "clean (9-class model)", "unseen class (Bag)"}
    for name, row in u.items():
        assert row["n"] == 40 and row["mi_mean"] > 0, name
    for name in ("noise", "rotation", "unseen class (Bag)"):
        assert 0 <= u[name]["auroc_mi"] <= 1 and 0 <= u[name]["auroc_entropy"] <= 1, name
    # Even this tiny model finds the unseen class more uncertain than its clean test images.
    assert u["unseen class (Bag)"]["auroc_mi"] > 0.6
    assert u["unseen class (Bag)"]["mi_mean"] > u["clean (9-class model)"]["mi_mean"]
    for png in ("reliability.png", "mutual_info_shifts.png", "shifts.png"):
        check_png(out, png)


@pytest.mark.parametrize("sink", ["npy", "csv"])
def test_pipeline(server, tmp_path, sink):
    out = str(tmp_path)
    rows = 20000
    returned = example("pipeline").main(["--server", server.address, "--out", out, "--rows", str(rows),
                                         "--chunk-rows", "4096", "--train-size", "300", "--sink", sink])
    r = read_results(out)
    assert r == json.loads(json.dumps(returned))
    assert r["rows"] == rows and r["chunks"] == 5 and sum(r["predicted_class_counts"]) == rows
    assert r["rows_per_second"] > 0 and r["stream_seconds"] > 0
    assert r["accuracy_vs_source_labels"] > 0.5  # chance is 0.1
    check_png(out, "throughput.png")
    if sink == "npy":
        predicted = np.load(os.path.join(out, "predicted_class.npy"))
        confidence = np.load(os.path.join(out, "confidence.npy"))
        assert predicted.shape == confidence.shape == (rows,)
        assert np.array_equal(np.bincount(predicted, minlength=10), r["predicted_class_counts"])
        assert np.all((confidence >= 0.1 - 1e-6) & (confidence <= 1))
    else:
        import pandas as pd
        frame = pd.read_csv(os.path.join(out, "predictions.csv"))
        assert list(frame.columns) == ["id", "predicted", "confidence"]
        assert np.array_equal(frame["id"].to_numpy(), np.arange(rows))
        assert np.array_equal(np.bincount(frame["predicted"], minlength=10), r["predicted_class_counts"])
