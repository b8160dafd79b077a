"""The Open Inference Protocol endpoint with the stock tritonclient, plus gRPC health and server
reflection from Python clients, against a real ntk-server.

usage: oip_test.py NTK_SERVER NTKCTL
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

try:
    import grpc
    import numpy as np
    import tritonclient.grpc as triton
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

SERVER, NTKCTL = sys.argv[1], sys.argv[2]
ENV = dict(os.environ, NTK_LOG_LEVEL="warning")


def ntkctl(*args):
    r = subprocess.run([NTKCTL, *map(str, args)], capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise AssertionError(f"ntkctl {' '.join(map(str, args))}: {r.stderr}")
    return r.stdout


class OpenInferenceProtocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", "--data-dir", d + "/data", "--metrics", "off",
                                     "--log-level", "warning"], stdout=subprocess.PIPE, text=True, env=ENV)
        line = cls.proc.stdout.readline()
        cls.port = int(re.search(r"listening on port (\d+)", line).group(1))
        cls.address = f"127.0.0.1:{cls.port}"
        rng = np.random.default_rng(0)
        x = rng.standard_normal((120, 6))
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
        cls.test = rng.standard_normal((33, 6))
        np.save(d + "/x.npy", x)
        np.save(d + "/y.npy", y)
        np.save(d + "/t.npy", cls.test)
        ntkctl("--server", cls.address, "upload", "--name", "train", "--x", d + "/x.npy", "--labels", d + "/y.npy")
        out = ntkctl("--server", cls.address, "fit", "--dataset", "train", "--lambda", "1e-2", "--depth", "2",
                     "--w-std", "1.5", "--b-std", "0.1", "--json", "--quiet")
        cls.model = json.loads(out)["model"]
        ntkctl("--server", cls.address, "predict", "--model", cls.model, "--x", d + "/t.npy", "--out-dir", d + "/p")
        cls.mean = {name: np.load(f"{d}/p/{name}.npy") for name in ("logits", "probs")}
        ntkctl("--server", cls.address, "predict", "--model", cls.model, "--x", d + "/t.npy", "--out-dir", d + "/u",
               "--uncertainty", "linearized")
        cls.expected = {name: np.load(f"{d}/u/{name}.npy") for name in
                        ("logits", "probs", "logit_var", "entropy", "mutual_info")}

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=30)
        cls.tmp.cleanup()

    def test_server_and_model_metadata(self):
        client = triton.InferenceServerClient(self.address)
        self.assertTrue(client.is_server_live())
        self.assertTrue(client.is_server_ready())
        self.assertEqual(client.get_server_metadata().name, "ntkserve")
        self.assertTrue(client.is_model_ready(self.model))
        self.assertFalse(client.is_model_ready("m-0000000000000000"))
        meta = client.get_model_metadata(self.model)
        self.assertEqual(meta.inputs[0].name, "X")
        self.assertEqual(list(meta.inputs[0].shape), [-1, 6])
        self.assertEqual([o.name for o in meta.outputs], ["LOGITS", "PROBS", "LOGIT_VAR", "ENTROPY", "MUTUAL_INFO"])

    def test_model_infer_gives_the_same_probabilities_as_the_native_api(self):
        client = triton.InferenceServerClient(self.address)
        x = triton.InferInput("X", list(self.test.shape), "FP64")
        x.set_data_from_numpy(self.test)
        result = client.infer(self.model, [x])
        np.testing.assert_array_equal(result.as_numpy("PROBS"), self.mean["probs"])
        np.testing.assert_array_equal(result.as_numpy("LOGITS"), self.mean["logits"])

    def test_uncertainty_outputs_through_parameters(self):
        client = triton.InferenceServerClient(self.address)
        x = triton.InferInput("X", list(self.test.shape), "FP64")
        x.set_data_from_numpy(self.test)
        outputs = [triton.InferRequestedOutput(n) for n in ("PROBS", "LOGIT_VAR", "ENTROPY", "MUTUAL_INFO")]
        result = client.infer(self.model, [x], outputs=outputs, parameters={"uncertainty": "linearized"})
        np.testing.assert_array_equal(result.as_numpy("LOGIT_VAR"), self.expected["logit_var"])
        np.testing.assert_array_equal(result.as_numpy("MUTUAL_INFO"), self.expected["mutual_info"].ravel())
        np.testing.assert_array_equal(result.as_numpy("ENTROPY"), self.expected["entropy"].ravel())
        np.testing.assert_array_equal(result.as_numpy("PROBS"), self.expected["probs"])
        # FP32 in, FP32 out: the same values rounded once.
        x32 = triton.InferInput("X", list(self.test.shape), "FP32")
        x32.set_data_from_numpy(self.test.astype(np.float32))
        probs32 = client.infer(self.model, [x32]).as_numpy("PROBS")
        self.assertEqual(probs32.dtype, np.float32)
        np.testing.assert_allclose(probs32, self.mean["probs"], rtol=0, atol=1e-5)

    def test_bad_requests_get_invalid_argument_and_not_found(self):
        client = triton.InferenceServerClient(self.address)
        bad = triton.InferInput("X", [4, 5], "FP64")
        bad.set_data_from_numpy(np.zeros((4, 5)))
        with self.assertRaises(triton.InferenceServerException) as e:
            client.infer(self.model, [bad])
        self.assertIn("5 columns", str(e.exception))
        self.assertEqual(e.exception.status(), "StatusCode.INVALID_ARGUMENT")
        with self.assertRaises(triton.InferenceServerException) as e:
            x = triton.InferInput("X", [1, 6], "FP64")
            x.set_data_from_numpy(np.zeros((1, 6)))
            client.infer("m-0000000000000000", [x])
        self.assertEqual(e.exception.status(), "StatusCode.NOT_FOUND")
        with self.assertRaises(triton.InferenceServerException) as e:
            x = triton.InferInput("X", [1, 6], "INT32")
            x.set_data_from_numpy(np.zeros((1, 6), dtype=np.int32))
            client.infer(self.model, [x])
        self.assertIn("FP32 or FP64", str(e.exception))

    def test_health_per_service_and_reflection(self):
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "ntkserve.v1.PredictService", "ntkserve.v1.ModelService",
                            "inference.GRPCInferenceService"):
                status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
                self.assertEqual(status, health_pb2.HealthCheckResponse.SERVING, service)
            with self.assertRaises(grpc.RpcError) as e:
                health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = {s.name for r in responses for s in r.list_services_response.service}
            for expected in ("ntkserve.v1.DatasetService", "ntkserve.v1.ModelService", "ntkserve.v1.PredictService",
                             "ntkserve.v1.KernelService", "ntkserve.v1.ServerService", "inference.GRPCInferenceService",
                             "grpc.health.v1.Health"):
                self.assertIn(expected, names)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
