"""The stock tritonclient on the Open Inference Protocol endpoint gets the same probabilities as
ntkserve.Client.predict."""
import uuid

import numpy as np
import pytest

triton = pytest.importorskip("tritonclient.grpc")


def test_tritonclient_matches_client_predict(client, blobs):
    x, y = blobs
    ds = "oip-" + uuid.uuid4().hex[:8]
    client.upload(ds, x, y)
    model = client.fit(ds, lambda_=1e-2, depth=2, w_std=1.5, b_std=0.1).wait()
    ours = client.predict(model.model_id, x[:30])
    ours_u = client.predict(model.model_id, x[:30], uncertainty="linearized")
    t = triton.InferenceServerClient(client.address)
    assert t.is_model_ready(model.model_id)
    inp = triton.InferInput("X", [30, 6], "FP64")
    inp.set_data_from_numpy(np.ascontiguousarray(x[:30]))
    np.testing.assert_array_equal(t.infer(model.model_id, [inp]).as_numpy("PROBS"), ours.probs)
    result = t.infer(model.model_id, [inp], parameters={"uncertainty": "linearized"})
    np.testing.assert_array_equal(result.as_numpy("PROBS"), ours_u.probs)
    np.testing.assert_array_equal(result.as_numpy("MUTUAL_INFO"), ours_u.mutual_info)
