"""The Python client of ntk-server."""
import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, Optional

import grpc
import numpy as np

from . import errors
from ._health import health_pb2, health_pb2_grpc
from .v1 import common_pb2, dataset_pb2, dataset_pb2_grpc, kernel_pb2, kernel_pb2_grpc
from .v1 import model_pb2, model_pb2_grpc, predict_pb2, predict_pb2_grpc, server_pb2, server_pb2_grpc

CHUNK = 1 << 20
_UNCERTAINTY = {None: predict_pb2.UNCERTAINTY_NONE, "none": predict_pb2.UNCERTAINTY_NONE,
                "exact": predict_pb2.UNCERTAINTY_EXACT, "linearized": predict_pb2.UNCERTAINTY_LINEARIZED,
                "mc": predict_pb2.UNCERTAINTY_MONTE_CARLO}
_SOLVER = {"auto": model_pb2.SOLVER_AUTO, "direct": model_pb2.SOLVER_DIRECT,
           "matrix_free": model_pb2.SOLVER_MATRIX_FREE}
_FINAL = (model_pb2.SUCCEEDED, model_pb2.FAILED, model_pb2.CANCELLED)


def _encode(x, dtype=None):
    """A numpy array as an ntkserve.v1.Matrix (FLOAT32/FLOAT64, C order, little-endian)."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise errors.InvalidArgument(f"expected a 2-d array, got shape {a.shape}")
    if dtype is None:
        dtype = np.float32 if a.dtype == np.float32 else np.float64
    a = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    return common_pb2.Matrix(rows=a.shape[0], cols=a.shape[1],
                             dtype=common_pb2.FLOAT32 if a.dtype.itemsize == 4 else common_pb2.FLOAT64,
                             data=a.tobytes())


def _decode(m):
    if m.dtype == common_pb2.INT64:
        dt = "<i8"
    elif m.dtype == common_pb2.FLOAT32:
        dt = "<f4"
    else:
        dt = "<f8"
    return np.frombuffer(m.data, dtype=dt).reshape(m.rows, m.cols)


@dataclass
class Prediction:
    """Predictions of T test points. Uncertainty fields are None without an uncertainty mode."""

    logits: np.ndarray
    probs: np.ndarray
    classes: np.ndarray
    logit_var: Optional[np.ndarray] = None
    entropy: Optional[np.ndarray] = None  # predictive entropy H[E softmax f]
    expected_entropy: Optional[np.ndarray] = None
    mutual_info: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None  # T x C x C when requested

    @staticmethod
    def from_responses(responses):
        parts = {k: [] for k in ("logits", "probs", "classes", "logit_var", "predictive_entropy", "expected_entropy",
                                 "mutual_info", "covariance")}
        expected_offset = 0
        for r in responses:
            if r.row_offset != expected_offset:
                raise errors.NTKServeError(f"batches out of order: {r.row_offset} after {expected_offset} rows")
            expected_offset += r.rows
            for k in parts:
                if r.HasField(k):
                    parts[k].append(_decode(getattr(r, k)))
        cat = {k: (np.concatenate(v) if v else None) for k, v in parts.items()}
        if cat["logits"] is None:
            cat["logits"] = np.zeros((0, 0))
            cat["probs"] = np.zeros((0, 0))
            cat["classes"] = np.zeros((0, 1), dtype=np.int64)
        c = cat["logits"].shape[1]
        cov = cat["covariance"]
        return Prediction(logits=cat["logits"], probs=cat["probs"], classes=cat["classes"].ravel(),
                          logit_var=cat["logit_var"],
                          entropy=None if cat["predictive_entropy"] is None else cat["predictive_entropy"].ravel(),
                          expected_entropy=None if cat["expected_entropy"] is None else cat["expected_entropy"].ravel(),
                          mutual_info=None if cat["mutual_info"] is None else cat["mutual_info"].ravel(),
                          covariance=None if cov is None else cov.reshape(-1, c, c))


@dataclass
class FitProgress:
    job_id: str
    state: str
    phase: str
    newton_step: int
    residual: float
    objective: float
    cg_iterations: int
    elapsed_seconds: float
    estimated_remaining_seconds: float
    error_code: str
    message: str
    converged: bool

    @staticmethod
    def from_proto(p):
        return FitProgress(p.job_id, model_pb2.JobState.Name(p.state).lower(), p.phase, p.newton_step, p.residual,
                           p.objective, p.cg_iterations, p.elapsed_seconds, p.estimated_remaining_seconds,
                           p.error_code, p.message, p.converged)

    @property
    def done(self):
        return self.state in ("succeeded", "failed", "cancelled")


class Job:
    """A fit job on the server. wait() blocks until it ends and returns the model's info."""

    def __init__(self, client, job_id):
        self.client = client
        self.id = job_id
        self.model_id = job_id

    def progress(self) -> Iterator[FitProgress]:
        """The job's progress now, then every change until it ends."""
        request = model_pb2.WatchFitRequest(job_id=self.id)
        for p in self.client._stream(self.client._models.WatchFit, request):
            yield FitProgress.from_proto(p)

    def wait(self, progress=False, timeout=None):
        """Waits for the end; returns the ModelInfo (a protobuf message). Raises FitFailed when the job
        failed or was cancelled. progress=True shows a tqdm bar (or plain lines without tqdm)."""
        bar = _ProgressBar(self.id) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        attempts = 0
        while True:
            try:
                for p in self.progress():
                    last = p
                    if bar:
                        bar.update(p)
                    if deadline is not None and time.monotonic() > deadline:
                        raise errors.DeadlineExceeded(f"fit {self.id} still {p.state} after {timeout} s")
                break
            except errors.Unavailable:
                attempts += 1
                if attempts > self.client.retries:
                    raise
                time.sleep(min(5.0, self.client.backoff * 2 ** attempts))
        if bar:
            bar.close()
        if last is None or last.state != "succeeded":
            state = last.state if last else "unknown"
            raise errors.FitFailed(f"fit {self.id} {state}: {last.message if last else ''}",
                                   getattr(grpc.StatusCode, (last.error_code if last else "") or "UNKNOWN",
                                           grpc.StatusCode.UNKNOWN))
        return self.client.model(self.model_id)

    def cancel(self):
        return FitProgress.from_proto(self.client._call(self.client._models.CancelFit,
                                                        model_pb2.CancelFitRequest(job_id=self.id)))

    def __repr__(self):
        return f"Job({self.id!r})"


class _ProgressBar:
    def __init__(self, job_id):
        try:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=100, desc=job_id, bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")
        except ImportError:
            self.bar = None
        self.shown = 0

    def update(self, p):
        frac = 0.0
        if p.newton_step > 0 and p.residual > 0:
            frac = min(1.0, max(0.0, (2 - np.log10(p.residual)) / 12))
        if p.state == "succeeded":
            frac = 1.0
        if self.bar is not None:
            target = int(round(100 * frac))
            if target > self.shown:
                self.bar.update(target - self.shown)
                self.shown = target
            self.bar.set_postfix_str(f"{p.phase} step {p.newton_step} residual {p.residual:.2e}")
        else:
            print(f"{p.job_id} {p.state:9s} {p.phase:8s} step {p.newton_step:3d} residual {p.residual:.2e} "
                  f"{p.elapsed_seconds:.2f}s", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def kernel_spec(depth=3, activation="relu", w_std=1.5, b_std=0.1, w_std_out=None, b_std_out=None, act_a=None,
                act_b=None, act_c=None, dtype="float64", quadrature_degree=0):
    """An ntkserve.v1.KernelSpec (SPEC section 1) from keyword arguments."""
    spec = common_pb2.KernelSpec(depth=int(depth), w_std=float(w_std), b_std=float(b_std),
                                 quadrature_degree=int(quadrature_degree))
    spec.activation.name = activation
    for name, value in (("a", act_a), ("b", act_b), ("c", act_c)):
        if value is not None:
            setattr(spec.activation, name, float(value))
    if w_std_out is not None:
        spec.w_std_out = float(w_std_out)
    if b_std_out is not None:
        spec.b_std_out = float(b_std_out)
    if dtype not in ("float32", "float64"):
        raise errors.InvalidArgument(f"dtype must be float32 or float64, got {dtype!r}")
    spec.compute_dtype = common_pb2.FLOAT32 if dtype == "float32" else common_pb2.FLOAT64
    return spec


class Client:
    """A connection to ntk-server.

    Client("host:port", token=..., tls=True, root_certificates=pem_bytes, ...) connects to a server;
    Client() with no address starts a private local server (ntkserve.LocalServer, with `local_args` as
    extra ntk-server flags, e.g. ("--backend", "cuda:0")) that lives as long as the client. Every failed call raises an ntkserve.errors.NTKServeError subclass carrying the gRPC
    status code and the server's message.
    """

    def __init__(self, address=None, token=None, tls=False, root_certificates=None, certificate_chain=None,
                 private_key=None, server_name=None, timeout=None, retries=4, backoff=0.1, local_args=()):
        self.local_server = None
        if address is None:
            address = os.environ.get("NTK_SERVER")
        if address is None:
            from .local import LocalServer
            self.local_server = LocalServer(args=tuple(local_args))
            address = self.local_server.address
        self.address = address
        self.token = token if token is not None else os.environ.get("NTK_TOKEN")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls or root_certificates or certificate_chain:
            read = lambda v: open(v, "rb").read() if isinstance(v, str) else v
            creds = grpc.ssl_channel_credentials(read(root_certificates), read(private_key), read(certificate_chain))
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self._datasets = dataset_pb2_grpc.DatasetServiceStub(self.channel)
        self._models = model_pb2_grpc.ModelServiceStub(self.channel)
        self._predict = predict_pb2_grpc.PredictServiceStub(self.channel)
        self._kernel = kernel_pb2_grpc.KernelServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._server = server_pb2_grpc.ServerServiceStub(self.channel)

    # -- plumbing -----------------------------------------------------------------------------------
    def _metadata(self):
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _call(self, method, request, idempotent=True):
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or not idempotent or attempt == self.retries:
                    raise errors.from_rpc_error(e) from None
                time.sleep(min(5.0, self.backoff * 2 ** attempt * random.uniform(0.5, 1.5)))

    def _stream(self, method, request):
        try:
            yield from method(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def close(self):
        self.channel.close()
        if self.local_server is not None:
            self.local_server.close()
            self.local_server = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- datasets -----------------------------------------------------------------------------------
    def upload(self, name, x, y=None, targets=None, dtype=None, num_classes=0, metadata=None, progress=False):
        """Uploads x (N x d; a numpy array or an .npy path) with integer labels y (N) or soft targets (N x C);
        returns the DatasetInfo. Chunks of 1 MiB; progress=True shows a bar."""
        if isinstance(x, (str, os.PathLike)):
            x = np.load(x)
        if isinstance(y, (str, os.PathLike)):
            y = np.load(y)
        if isinstance(targets, (str, os.PathLike)):
            targets = np.load(targets)
        if y is not None and targets is not None:
            raise errors.InvalidArgument("give labels y or soft targets, not both")
        xm = _encode(x, dtype)
        payload = [xm.data]
        header = dataset_pb2.UploadHeader(name=name, dtype=xm.dtype, rows=xm.rows, cols=xm.cols,
                                          num_classes=int(num_classes), metadata=metadata or {})
        if y is not None:
            y = np.asarray(y)
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise errors.InvalidArgument(f"labels must be a 1-d integer array, got {y.dtype} {y.shape}")
            payload.append(np.ascontiguousarray(y, dtype="<i8").tobytes())
            header.has_labels = True
        if targets is not None:
            t = _encode(targets, np.float32 if xm.dtype == common_pb2.FLOAT32 else np.float64)
            payload.append(t.data)
            header.has_targets = True
            header.num_classes = t.cols
        data = b"".join(payload)
        header.sha256 = hashlib.sha256(data).hexdigest()
        bar = None
        if progress:
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(data), unit="B", unit_scale=True, desc=f"upload {name}")
            except ImportError:
                bar = None

        def requests():
            yield dataset_pb2.UploadDatasetRequest(header=header)
            for offset in range(0, len(data), CHUNK):
                chunk = data[offset:offset + CHUNK]
                if bar is not None:
                    bar.update(len(chunk))
                yield dataset_pb2.UploadDatasetRequest(chunk=chunk)

        try:
            # Retried on UNAVAILABLE: an upload that was stored answers ALREADY_EXISTS the second time.
            for attempt in range(self.retries + 1):
                try:
                    return self._datasets.UploadDataset(requests(), timeout=self.timeout, metadata=self._metadata())
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                        raise errors.from_rpc_error(e) from None
                    time.sleep(min(5.0, self.backoff * 2 ** attempt))
        finally:
            if bar is not None:
                bar.close()

    def datasets(self):
        return list(self._call(self._datasets.ListDatasets, dataset_pb2.ListDatasetsRequest()).datasets)

    def dataset(self, name):
        return self._call(self._datasets.GetDataset, dataset_pb2.GetDatasetRequest(name=name))

    def delete_dataset(self, name):
        self._call(self._datasets.DeleteDataset, dataset_pb2.DeleteDatasetRequest(name=name))

    # -- fits and models ----------------------------------------------------------------------------
    def fit(self, dataset, lambda_=1e-3, label_smoothing=0.0, solver="auto", tolerance=0.0, max_newton_steps=0,
            diag_reg=0.0, time=0.0, learning_rate=0.0, description="", spec=None, **spec_args) -> Job:
        """Queues a fit of `dataset` and returns its Job at once. The architecture is `spec` (from
        kernel_spec()) or kernel_spec(**spec_args): depth, activation, w_std, b_std, ..."""
        if solver not in _SOLVER:
            raise errors.InvalidArgument(f"solver must be one of {sorted(_SOLVER)}, got {solver!r}")
        request = model_pb2.FitRequest(dataset=dataset, spec=spec if spec is not None else kernel_spec(**spec_args),
                                       label_smoothing=float(label_smoothing), solver=_SOLVER[solver],
                                       tolerance=float(tolerance), max_newton_steps=int(max_newton_steps),
                                       diag_reg=float(diag_reg), time=float(time),
                                       learning_rate=float(learning_rate), description=description)
        setattr(request, "lambda", float(lambda_))
        job = self._call(self._models.Fit, request, idempotent=False)
        return Job(self, job.job_id)

    def job(self, job_id) -> Job:
        return Job(self, job_id)

    def models(self):
        return list(self._call(self._models.ListModels, model_pb2.ListModelsRequest()).models)

    def model(self, model_id):
        return self._call(self._models.GetModel, model_pb2.GetModelRequest(model_id=model_id))

    def delete_model(self, model_id):
        self._call(self._models.DeleteModel, model_pb2.DeleteModelRequest(model_id=model_id))

    def export_model(self, model_id, path=None) -> bytes:
        """The portable model file (docs/model_format.md); written to `path` when given."""
        data = b"".join(c.data for c in self._stream(self._models.ExportModel,
                                                      model_pb2.ExportModelRequest(model_id=model_id)))
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    def import_model(self, data):
        """Stores a model file (bytes or a path) under a new id; returns its ModelInfo."""
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                data = f.read()
        chunks = (model_pb2.ModelChunk(data=data[o:o + CHUNK]) for o in range(0, len(data), CHUNK))
        try:
            return self._models.ImportModel(chunks, timeout=self.timeout, metadata=self._metadata())
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    # -- predictions --------------------------------------------------------------------------------
    def _predict_request(self, model_id, uncertainty, samples, seed, batch_rows, float32_results, covariance):
        if uncertainty not in _UNCERTAINTY:
            raise errors.InvalidArgument(f"uncertainty must be None, 'exact', 'linearized' or 'mc', got {uncertainty!r}")
        return predict_pb2.PredictRequest(model_id=model_id, uncertainty=_UNCERTAINTY[uncertainty],
                                          samples=int(samples or 0), seed=int(seed or 0),
                                          batch_rows=int(batch_rows or 0), float32_results=bool(float32_results),
                                          covariance=bool(covariance))

    def predict(self, model_id, x=None, dataset=None, uncertainty=None, samples=None, seed=None, batch_rows=None,
                float32_results=False, covariance=False) -> Prediction:
        """Predictions for x (T x d) or every row of an uploaded dataset, streamed in batches and
        reassembled in order. Large inputs are sent in pieces of at most ~32 MiB (one Predict call each)."""
        if (x is None) == (dataset is None):
            raise errors.InvalidArgument("give x or dataset")
        if dataset is not None:
            request = self._predict_request(model_id, uncertainty, samples, seed, batch_rows, float32_results,
                                            covariance)
            request.dataset = dataset
            return Prediction.from_responses(self._retrying_stream(self._predict.Predict, request))
        x = np.asarray(x)
        if x.ndim != 2:
            raise errors.InvalidArgument(f"x must be 2-d (T x d), got shape {x.shape}")
        rows_per_call = max(1, (32 << 20) // max(1, x.shape[1] * 8))
        parts = []
        for start in range(0, max(1, x.shape[0]), rows_per_call):
            request = self._predict_request(model_id, uncertainty, samples, seed, batch_rows, float32_results,
                                            covariance)
            request.x.CopyFrom(_encode(x[start:start + rows_per_call]))
            parts.append(Prediction.from_responses(self._retrying_stream(self._predict.Predict, request)))
        if len(parts) == 1:
            return parts[0]
        joined = {}
        for k in Prediction.__dataclass_fields__:
            values = [getattr(p, k) for p in parts]
            joined[k] = None if values[0] is None else np.concatenate(values)
        return Prediction(**joined)

    def _retrying_stream(self, method, request):
        for attempt in range(self.retries + 1):
            try:
                return list(method(request, timeout=self.timeout, metadata=self._metadata()))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise errors.from_rpc_error(e) from None
                time.sleep(min(5.0, self.backoff * 2 ** attempt))

    def predict_stream(self, model_id, batches: Iterable, uncertainty=None, samples=None, seed=None,
                       float32_results=False) -> Iterator[Prediction]:
        """For pipelines: sends each array of `batches` as one request of a bidirectional stream and yields
        each result, in order, as it arrives. gRPC's flow control bounds what is in flight."""
        def requests():
            first = True
            for b in batches:
                r = self._predict_request(model_id if first else "", uncertainty, samples, seed, 0, float32_results,
                                          False)
                r.x.CopyFrom(_encode(b))
                first = False
                yield r

        try:
            for response in self._predict.PredictStream(requests(), timeout=self.timeout, metadata=self._metadata()):
                yield _single(response)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    # -- kernels and health -------------------------------------------------------------------------
    def kernel(self, x1, x2=None, kind="ntk", spec=None, tile_rows=0, **spec_args) -> np.ndarray:
        """K(x1, x2) (x2 None: the symmetric K(x1, x1)), NTK or NNGP, assembled from the streamed tiles."""
        if kind not in ("ntk", "nngp"):
            raise errors.InvalidArgument(f"kind must be 'ntk' or 'nngp', got {kind!r}")
        request = kernel_pb2.ComputeKernelRequest(spec=spec if spec is not None else kernel_spec(**spec_args),
                                                  kind=common_pb2.NTK if kind == "ntk" else common_pb2.NNGP,
                                                  tile_rows=int(tile_rows))
        x1 = np.asarray(x1)
        request.x1.x.CopyFrom(_encode(x1, np.float64))
        cols = x1.shape[0]
        if x2 is not None:
            x2 = np.asarray(x2)
            request.x2.x.CopyFrom(_encode(x2, np.float64))
            cols = x2.shape[0]
        out = np.empty((x1.shape[0], cols))
        for tile in self._retrying_stream(self._kernel.ComputeKernel, request):
            v = _decode(tile.values)
            out[tile.row_offset:tile.row_offset + v.shape[0], tile.col_offset:tile.col_offset + v.shape[1]] = v
        return out

    def server_info(self):
        """The server's version, backend ("cpu" / "cuda:N") and its description, memory budget and use,
        and fit queue (an ntkserve.v1.ServerInfo message)."""
        return self._call(self._server.GetServerInfo, server_pb2.GetServerInfoRequest())

    def health(self, service="") -> str:
        """'SERVING', 'NOT_SERVING' or 'UNKNOWN' for the server ('') or a service name."""
        r = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def __repr__(self):
        return f"ntkserve.Client({self.address!r}{', local' if self.local_server else ''})"


def _single(response):
    """One PredictStream response as a Prediction."""
    return Prediction.from_responses([_rebased(response)])


def _rebased(response):
    r = predict_pb2.PredictResponse()
    r.CopyFrom(response)
    r.row_offset = 0
    return r
