"""NTKClassifier: a scikit-learn estimator backed by ntk-server."""
import threading
import uuid

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover
    raise ImportError("ntkserve.sklearn needs scikit-learn: pip install 'ntkserve[sklearn]'") from e

from . import errors
from .client import Client, kernel_spec

_LOCAL = {}
_LOCAL_LOCK = threading.Lock()


def _shared_local_client():
    """One private local server per process for every estimator that names no server."""
    with _LOCAL_LOCK:
        client = _LOCAL.get("client")
        if client is None:
            client = Client()
            _LOCAL["client"] = client
        return client


class NTKClassifier(ClassifierMixin, BaseEstimator):
    """The cross-entropy Neural Tangent Kernel classifier of an infinitely wide fully-connected network,
    fitted on ntk-server.

    Parameters
    ----------
    server : str or None
        "host:port" of an ntk-server; None starts (once per process) a private local server.
    token : str or None
        API token of the server.
    depth, activation, w_std, b_std, w_std_out, b_std_out, act_a, act_b, act_c, dtype
        The architecture (SPEC section 1).
    reg_lambda : float
        Parameter-space regularization (lambda > 0: the regularized fixed point; 0: the closed form,
        which needs label_smoothing > 0).
    label_smoothing : float
    solver : {"auto", "direct", "matrix_free"}
    uncertainty : {None, "exact", "linearized", "mc"}
        The mode predict_uncertainty uses (None: "exact" for reg_lambda = 0, else "linearized").
    samples, seed : Monte Carlo settings.
    tolerance, max_newton_steps, diag_reg : solver settings (0: the server's defaults).
    """

    def __init__(self, server=None, token=None, depth=3, activation="relu", w_std=1.5, b_std=0.1, w_std_out=None,
                 b_std_out=None, act_a=None, act_b=None, act_c=None, dtype="float64", reg_lambda=1e-3,
                 label_smoothing=0.0, solver="auto", uncertainty=None, samples=100, seed=0, tolerance=0.0,
                 max_newton_steps=0, diag_reg=0.0):
        self.server = server
        self.token = token
        self.depth = depth
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.w_std_out = w_std_out
        self.b_std_out = b_std_out
        self.act_a = act_a
        self.act_b = act_b
        self.act_c = act_c
        self.dtype = dtype
        self.reg_lambda = reg_lambda
        self.label_smoothing = label_smoothing
        self.solver = solver
        self.uncertainty = uncertainty
        self.samples = samples
        self.seed = seed
        self.tolerance = tolerance
        self.max_newton_steps = max_newton_steps
        self.diag_reg = diag_reg

    # The connection is never pickled: it is reopened on first use. The model travels as its file, so
    # that an unpickled estimator works on another server (or a fresh local one) too.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_client", None)
        if "model_id_" in state and "_model_file" not in state:
            state["_model_file"] = self._connection().export_model(self.model_id_)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _connection(self):
        client = self.__dict__.get("_client")
        if client is None:
            client = Client(self.server, token=self.token) if self.server else _shared_local_client()
            self._client = client
        return client

    def _spec(self):
        return kernel_spec(depth=self.depth, activation=self.activation, w_std=self.w_std, b_std=self.b_std,
                           w_std_out=self.w_std_out, b_std_out=self.b_std_out, act_a=self.act_a, act_b=self.act_b,
                           act_c=self.act_c, dtype=self.dtype)

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"NTKClassifier needs at least 2 classes in y; got 1 class: {self.classes_[0]!r}")
        client = self._connection()
        name = "sklearn-" + uuid.uuid4().hex
        client.upload(name, X, encoded.astype(np.int64), num_classes=len(self.classes_))
        try:
            job = client.fit(name, lambda_=self.reg_lambda, label_smoothing=self.label_smoothing, solver=self.solver,
                             tolerance=self.tolerance, max_newton_steps=self.max_newton_steps, diag_reg=self.diag_reg,
                             spec=self._spec(), description="NTKClassifier")
            info = job.wait()
        finally:
            client.delete_dataset(name)  # the model keeps its own copy of the training set
        self.model_id_ = info.model_id
        self.converged_ = info.converged
        self.n_newton_steps_ = info.newton_steps
        self.__dict__.pop("_model_file", None)
        return self

    def _predict(self, X, uncertainty=None):
        check_is_fitted(self, "model_id_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        client = self._connection()
        try:
            return client.predict(self.model_id_, X, uncertainty=uncertainty, samples=self.samples, seed=self.seed)
        except errors.NotFound:
            model_file = self.__dict__.get("_model_file")
            if model_file is None:
                raise
            # Unpickled elsewhere: bring the model to this server first.
            self.model_id_ = client.import_model(model_file).model_id
            return client.predict(self.model_id_, X, uncertainty=uncertainty, samples=self.samples, seed=self.seed)

    def decision_function(self, X):
        logits = self._predict(X).logits
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X):
        return self._predict(X).probs

    def predict_log_proba(self, X):
        return np.log(np.clip(self.predict_proba(X), np.finfo(float).tiny, None))

    def predict(self, X):
        probs = self.predict_proba(X)  # first: it raises NotFittedError before classes_ exists
        return self.classes_[np.argmax(probs, axis=1)]

    def predict_uncertainty(self, X, mode=None):
        """The SPEC section 3 quantities per test point, as a dict of arrays: mean logits, probs (the mean of
        softmax over initialization), logit_var (T x C), entropy (predictive), expected_entropy,
        mutual_info, and the predicted class."""
        mode = mode or self.uncertainty or ("exact" if self.reg_lambda == 0 else "linearized")
        p = self._predict(X, uncertainty=mode)
        return {"logits": p.logits, "probs": p.probs, "logit_var": p.logit_var, "entropy": p.entropy,
                "expected_entropy": p.expected_entropy, "mutual_info": p.mutual_info,
                "classes": self.classes_[p.classes]}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags
