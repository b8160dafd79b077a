"""ntkserve.Client round trips against a real server, checked against ntkctl in-process."""
import os
import subprocess
import uuid

import numpy as np
import pytest

import ntkserve
from ntkserve import errors

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NTKCTL = os.environ.get("NTKCTL", os.path.join(ROOT, "build", "bin", "ntkctl"))
ARCH = dict(depth=2, w_std=1.5, b_std=0.1)


def name():
    return "t-" + uuid.uuid4().hex[:12]


def test_fit_and_predict_equal_ntkctl_in_process(client, blobs, tmp_path):
    x, y = blobs
    ds = name()
    info = client.upload(ds, x, y)
    assert info.rows == 150 and info.num_classes == 3 and info.has_labels
    model = client.fit(ds, lambda_=1e-2, **ARCH).wait()
    assert model.converged
    pred = client.predict(model.model_id, x[:40], batch_rows=40)
    # The same fit and prediction in-process through ntkctl.
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    np.save(tmp_path / "t.npy", x[:40])
    env = dict(os.environ, NTK_LOG_LEVEL="warning")
    subprocess.run([NTKCTL, "fit", "--x", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--lambda", "1e-2",
                    "--depth", "2", "--w-std", "1.5", "--b-std", "0.1", "--threads", "2", "--out",
                    tmp_path / "m.ntk", "--quiet"], check=True, env=env, capture_output=True)
    subprocess.run([NTKCTL, "predict", "--model", tmp_path / "m.ntk", "--x", tmp_path / "t.npy", "--threads", "2",
                    "--out-dir", tmp_path / "p"], check=True, env=env, capture_output=True)
    np.testing.assert_array_equal(pred.probs, np.load(tmp_path / "p" / "probs.npy"))
    np.testing.assert_array_equal(pred.logits, np.load(tmp_path / "p" / "logits.npy"))
    np.testing.assert_array_equal(pred.classes, np.load(tmp_path / "p" / "classes.npy"))


def test_uncertainty_streaming_and_dataset_input(client, blobs):
    x, y = blobs
    ds = name()
    client.upload(ds, x, y)
    model = client.fit(ds, lambda_=1e-2, **ARCH).wait()
    p = client.predict(model.model_id, x, uncertainty="linearized", batch_rows=16, covariance=True)
    assert p.logit_var.shape == (150, 3) and p.mutual_info.shape == (150,)
    assert p.covariance.shape == (150, 3, 3)
    np.testing.assert_allclose(np.diagonal(p.covariance, axis1=1, axis2=2), p.logit_var, rtol=1e-12, atol=1e-15)
    assert np.all(p.mutual_info >= -1e-12)
    np.testing.assert_allclose(p.entropy - p.expected_entropy, p.mutual_info, atol=1e-12)
    by_name = client.predict(model.model_id, dataset=ds, uncertainty="linearized", batch_rows=16)
    np.testing.assert_array_equal(by_name.probs, p.probs)
    # PredictStream: one response per batch, in order.
    pieces = list(client.predict_stream(model.model_id, [x[:1], x[1:64], x[64:]]))
    assert [q.probs.shape[0] for q in pieces] == [1, 63, 86]
    np.testing.assert_allclose(np.concatenate([q.probs for q in pieces]), client.predict(model.model_id, x).probs,
                               rtol=0, atol=1e-14)
    # Monte Carlo is seeded: the same seed gives the same numbers, whatever the batching (to rounding).
    a = client.predict(model.model_id, x[:8], uncertainty="mc", samples=16, seed=3)
    b = client.predict(model.model_id, x[:8], uncertainty="mc", samples=16, seed=3)
    np.testing.assert_array_equal(a.mutual_info, b.mutual_info)
    c = client.predict(model.model_id, x[:8], uncertainty="mc", samples=16, seed=3, batch_rows=3)
    np.testing.assert_allclose(c.mutual_info, a.mutual_info, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c.logit_var, a.logit_var, rtol=1e-9, atol=1e-12)


def test_closed_form_exact_uncertainty_and_kernel(client, blobs):
    x, y = blobs
    ds = name()
    client.upload(ds, x[:60], y[:60])
    model = client.fit(ds, lambda_=0, label_smoothing=0.1, **ARCH).wait()
    assert model.solver_used == "closed_form"
    p = client.predict(model.model_id, x[60:80], uncertainty="exact")
    assert p.logit_var.shape == (20, 3)
    k = client.kernel(x[:10], **ARCH)
    np.testing.assert_allclose(k, k.T, rtol=0, atol=0)
    k12 = client.kernel(x[:10], x[10:14], kind="nngp", **ARCH)
    assert k12.shape == (10, 4)


def test_export_import_and_listing(client, blobs, tmp_path):
    x, y = blobs
    ds = name()
    client.upload(ds, x[:50], y[:50])
    model = client.fit(ds, lambda_=0.1, **ARCH).wait()
    path = tmp_path / "model.ntk"
    data = client.export_model(model.model_id, path)
    assert path.read_bytes() == data
    imported = client.import_model(path)
    assert imported.model_id != model.model_id
    np.testing.assert_array_equal(client.predict(imported.model_id, x[:5]).probs,
                                  client.predict(model.model_id, x[:5]).probs)
    assert model.model_id in {m.model_id for m in client.models()}
    client.delete_model(imported.model_id)
    assert imported.model_id not in {m.model_id for m in client.models()}
    assert ds in {d.name for d in client.datasets()}
    client.delete_dataset(ds)
    with pytest.raises(errors.NotFound):
        client.dataset(ds)


def test_errors_carry_the_status_code_and_the_message(client, blobs):
    x, y = blobs
    ds = name()
    client.upload(ds, x, y)
    with pytest.raises(errors.AlreadyExists) as e:
        client.upload(ds, x, y)
    assert "already exists" in e.value.details
    with pytest.raises(errors.InvalidArgument) as e:
        client.upload(name(), np.array([[1.0, np.nan]]), np.array([0]))
    assert "non-finite value at row 0, column 1" in str(e.value)
    assert e.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(errors.FailedPrecondition, match="label_smoothing"):
        client.fit(ds, lambda_=0, **ARCH)
    with pytest.raises(errors.InvalidArgument, match="spec.activation.name"):
        client.fit(ds, lambda_=1e-2, activation="swish")
    with pytest.raises(errors.NotFound):
        client.fit("no-such-dataset", lambda_=1e-2)
    model = client.fit(ds, lambda_=1e-2, **ARCH).wait()
    with pytest.raises(errors.InvalidArgument, match="7 columns"):
        client.predict(model.model_id, np.zeros((2, 7)))
    with pytest.raises(errors.FailedPrecondition, match="EXACT"):
        client.predict(model.model_id, x[:2], uncertainty="exact")
    with pytest.raises(errors.InvalidArgument):
        client.predict(model.model_id, x[:2], uncertainty="sometimes")


def test_cancel_a_running_fit(client):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1200, 20))
    y = rng.integers(0, 10, 1200)
    ds = name()
    client.upload(ds, x, y)
    job = client.fit(ds, lambda_=1e-4, solver="direct", tolerance=1e-15, max_newton_steps=1000, **ARCH)
    for p in job.progress():
        if p.newton_step >= 1:
            job.cancel()
        if p.done:
            break
    with pytest.raises(errors.FitFailed) as e:
        job.wait()
    assert "cancelled" in str(e.value)


def test_tokens_and_tls_options_reach_the_server(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("python-test-token-01 team\n")
    with ntkserve.LocalServer(args=("--token-file", str(tokens))) as s:
        with pytest.raises(errors.Unauthenticated):
            ntkserve.Client(s.address, retries=0).datasets()
        c = ntkserve.Client(s.address, token="python-test-token-01")
        assert c.datasets() == []
        assert c.health() == "SERVING"
        c.close()


def test_local_client_starts_and_stops_its_own_server():
    with ntkserve.Client() as c:
        assert c.local_server is not None
        assert c.health() == "SERVING"
        process = c.local_server.process
    assert process.poll() is not None


def test_server_info_names_the_backend(client):
    info = client.server_info()
    assert info.backend in ("cpu",) or info.backend.startswith("cuda:")
    assert info.backend_description
    assert info.memory_budget_bytes > 0 and info.workers >= 1
    assert info.tenant == "default" and not info.authentication
    # The device pool: none on the CPU backend; on a GPU within its budget.
    if info.backend == "cpu":
        assert info.device_memory_budget_bytes == 0 and info.device_memory_in_use_bytes == 0
    else:
        assert 0 < info.device_memory_budget_bytes and info.device_memory_in_use_bytes <= info.device_memory_budget_bytes


def test_ntkctl_health_reports_the_servers_memory(server):
    import json
    out = subprocess.run([NTKCTL, "--server", server.address, "health", "--json"], check=True,
                         capture_output=True, text=True).stdout
    health = json.loads(out)
    assert health["status"] == "SERVING"
    assert health["memory_budget_bytes"] > 0
    for key in ("device_memory_budget_bytes", "device_memory_in_use_bytes", "device_memory_free_bytes"):
        assert key in health and health[key] >= 0
    import ntkserve.plots  # noqa: F401  (also reachable as ntkserve.plots)
    assert hasattr(ntkserve, "plots")
