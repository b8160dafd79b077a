"""NTKClassifier: the scikit-learn estimator API on a real server."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import ntkserve  # noqa: E402
from ntkserve.sklearn import NTKClassifier  # noqa: E402


def test_passes_scikit_learns_estimator_checks(server):
    results = check_estimator(NTKClassifier(server=server.address, depth=1, reg_lambda=1e-2), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed, failed
    # The only check that does not run is the array API one, which scikit-learn itself skips unless
    # SCIPY_ARRAY_API is set (a remote estimator sends numpy bytes anyway).
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}, skipped


def test_labels_of_any_type_and_uncertainty(server, blobs):
    x, y = blobs
    names = np.array(["cat", "dog", "owl"])[y]
    clf = NTKClassifier(server=server.address, depth=2, reg_lambda=1e-2).fit(x, names)
    assert list(clf.classes_) == ["cat", "dog", "owl"]
    assert clf.n_features_in_ == 6
    assert clf.score(x, names) > 0.8
    assert set(clf.predict(x[:10])) <= set(clf.classes_)
    u = clf.predict_uncertainty(x[:10])
    assert u["logit_var"].shape == (10, 3) and u["mutual_info"].shape == (10,)
    np.testing.assert_allclose(u["probs"].sum(axis=1), 1, atol=1e-12)
    zero = NTKClassifier(server=server.address, depth=2, reg_lambda=0, label_smoothing=0.1).fit(x, names)
    assert zero.predict_uncertainty(x[:3])["logit_var"].shape == (3, 3)  # exact mode for lambda = 0


def test_pipeline_gridsearch_and_cross_validation(server, blobs):
    x, y = blobs
    pipe = make_pipeline(StandardScaler(), NTKClassifier(server=server.address, depth=2))
    grid = GridSearchCV(pipe, {"ntkclassifier__reg_lambda": [1e-3, 1e-1], "ntkclassifier__depth": [1, 2]}, cv=3)
    grid.fit(x, y)
    assert grid.best_score_ > 0.8
    scores = cross_val_score(NTKClassifier(server=server.address, depth=1, reg_lambda=1e-2), x, y, cv=3)
    assert scores.mean() > 0.8


def test_pickled_estimator_works_on_another_server(server, blobs):
    x, y = blobs
    clf = NTKClassifier(server=server.address, depth=2, reg_lambda=1e-2).fit(x, y)
    expected = clf.predict_proba(x[:20])
    blob = pickle.dumps(clf)
    with ntkserve.LocalServer() as other:
        clone = pickle.loads(blob)
        clone.server = other.address  # a fresh server that has never seen the model
        np.testing.assert_array_equal(clone.predict_proba(x[:20]), expected)


def test_without_a_server_a_local_one_is_started(blobs):
    x, y = blobs
    clf = NTKClassifier(depth=1, reg_lambda=1e-2).fit(x[:60], y[:60])
    assert clf.predict(x[:5]).shape == (5,)
