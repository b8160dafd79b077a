"""ntkctl fit / predict / evaluate end to end on real files, as a user runs them.

usage: ntkctl_classifier_test.py NTKCTL
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("SKIP: numpy unavailable")
    sys.exit(77)

NTKCTL = sys.argv[1] if len(sys.argv) > 1 else "build/bin/ntkctl"
ARCH = ["--depth", "2", "--w-std", "1.5", "--b-std", "0.1"]


def run(*args):
    return subprocess.run([NTKCTL, *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, NTK_LOG_LEVEL="warning"))


class ClassifierCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rng = np.random.default_rng(3)
        means = rng.standard_normal((3, 8)) * 1.5
        y = rng.integers(0, 3, 90)
        x = means[y] + rng.standard_normal((90, 8))
        cls.files = {}
        for name, a in [("x", x[:60]), ("y", y[:60]), ("xt", x[60:]), ("yt", y[60:])]:
            cls.files[name] = os.path.join(cls.tmp.name, name + ".npy")
            np.save(cls.files[name], a)
        cls.y_test = y[60:]
        cls.model = cls.path("reg.ntk")
        r = run("fit", "--x", cls.files["x"], "--labels", cls.files["y"], "--lambda", "1e-2", "--out", cls.model,
                "--quiet", *ARCH)
        assert r.returncode == 0, r.stderr
        cls.model0 = cls.path("unreg.ntk")
        r = run("fit", "--x", cls.files["x"], "--labels", cls.files["y"], "--lambda", "0", "--label-smoothing",
                "0.1", "--out", cls.model0, "--quiet", *ARCH)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp.name, name)

    def assert_bad(self, args, *needles, code=2):
        before = set(os.listdir(self.tmp.name))
        r = run(*args)
        self.assertEqual(r.returncode, code, r.stdout + r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertEqual(set(os.listdir(self.tmp.name)), before, "a failed run left files behind")

    def test_predict_writes_consistent_outputs(self):
        out = self.path("pred")
        r = run("predict", "--model", self.model, "--x", self.files["xt"], "--out-dir", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        logits, probs = np.load(os.path.join(out, "logits.npy")), np.load(os.path.join(out, "probs.npy"))
        classes = np.load(os.path.join(out, "classes.npy"))
        self.assertEqual(logits.shape, (30, 3))
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-12)
        e = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-12)
        np.testing.assert_array_equal(classes, probs.argmax(1))
        self.assertGreater(np.mean(classes == self.y_test), 0.8)

    def test_uncertainty_outputs(self):
        for model, mode in [(self.model, "linearized"), (self.model0, "exact"), (self.model, "mc")]:
            out = self.path("u_" + mode)
            r = run("predict", "--model", model, "--x", self.files["xt"], "--out-dir", out, "--uncertainty", mode,
                    "--samples", "30", "--seed", "5")
            self.assertEqual(r.returncode, 0, r.stderr)
            var = np.load(os.path.join(out, "logit_var.npy"))
            h = np.load(os.path.join(out, "entropy.npy"))
            eh = np.load(os.path.join(out, "expected_entropy.npy"))
            mi = np.load(os.path.join(out, "mutual_info.npy"))
            self.assertEqual(var.shape, (30, 3))
            self.assertEqual(h.shape, (30,))
            self.assertTrue(np.all(var > 0), mode)
            np.testing.assert_allclose(mi, np.maximum(h - eh, 0), atol=1e-12)
            self.assertTrue(np.all(h <= np.log(3) + 1e-12))
        # mc is seeded: the same seed gives the same numbers.
        again = self.path("u_mc_again")
        run("predict", "--model", self.model, "--x", self.files["xt"], "--out-dir", again, "--uncertainty", "mc",
            "--samples", "30", "--seed", "5")
        np.testing.assert_array_equal(np.load(os.path.join(again, "logit_var.npy")),
                                      np.load(os.path.join(self.path("u_mc"), "logit_var.npy")))

    def test_evaluate_json_matches_predictions(self):
        r = run("evaluate", "--model", self.model, "--x", self.files["xt"], "--labels", self.files["yt"], "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = json.loads(r.stdout)
        out = self.path("pred_eval")
        run("predict", "--model", self.model, "--x", self.files["xt"], "--out-dir", out)
        probs = np.load(os.path.join(out, "probs.npy"))
        self.assertAlmostEqual(m["accuracy"], float(np.mean(probs.argmax(1) == self.y_test)), places=12)
        self.assertAlmostEqual(m["nll"], float(-np.mean(np.log(probs[np.arange(30), self.y_test]))), places=10)
        self.assertEqual(len(m["reliability"]), 15)
        self.assertEqual(sum(b["count"] for b in m["reliability"]), 30)
        r = run("evaluate", "--model", self.model, "--x", self.files["xt"], "--labels", self.files["yt"])
        self.assertIn("ECE (15)", r.stdout)

    def test_step_limit_exits_3_and_says_so(self):
        out = self.path("limited.ntk")
        r = run("fit", "--x", self.files["x"], "--labels", self.files["y"], "--lambda", "1e-4", "--out", out,
                "--max-steps", "1", "--quiet", *ARCH)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("NOT converged", r.stdout)
        self.assertTrue(os.path.exists(out))
        os.unlink(out)

    def test_fit_at_finite_time(self):
        out = self.path("flow.ntk")
        r = run("fit", "--x", self.files["x"], "--labels", self.files["y"], "--lambda", "0", "--time", "5",
                "--lr", "1", "--out", out, "--quiet", *ARCH)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("dynamics", r.stdout)
        os.unlink(out)

    def test_bad_fit_inputs(self):
        base = ["fit", "--x", self.files["x"], "--out", self.path("bad.ntk"), *ARCH]
        self.assert_bad(base + ["--labels", self.files["y"], "--lambda", "0"], "set lambda > 0 or label smoothing")
        self.assert_bad(base + ["--labels", self.files["y"]], "--lambda")
        self.assert_bad(base + ["--labels", self.files["y"], "--lambda", "-1"], "--lambda")
        self.assert_bad(base + ["--labels", self.files["y"], "--targets", self.files["x"], "--lambda", "1"],
                        "exactly one of --labels and --targets")
        floats = self.path("float_labels.npy")
        np.save(floats, np.zeros(60))
        self.assert_bad(base + ["--labels", floats, "--lambda", "1"], "--labels", "float64")
        os.unlink(floats)
        wrong = self.path("wrong_labels.npy")
        np.save(wrong, np.r_[np.zeros(59, dtype=np.int64), 7])
        self.assert_bad(base + ["--labels", wrong, "--lambda", "1", "--classes", "3"], "label 7 at index 59")
        np.save(wrong, np.zeros(10, dtype=np.int64))
        self.assert_bad(base + ["--labels", wrong, "--lambda", "1"], "10 entries", "60 rows")
        os.unlink(wrong)
        soft = self.path("soft.npy")
        np.save(soft, np.full((60, 3), 0.5))
        self.assert_bad(base + ["--targets", soft, "--lambda", "1"], "--targets", "not a probability vector")
        os.unlink(soft)
        x_nan = self.path("x_nan.npy")
        xs = np.load(self.files["x"])
        xs[3, 1] = np.nan
        np.save(x_nan, xs)
        self.assert_bad(["fit", "--x", x_nan, "--labels", self.files["y"], "--lambda", "1", "--out",
                         self.path("bad.ntk")], "NaN", "row 3")
        os.unlink(x_nan)

    def test_bad_predict_inputs(self):
        out = self.path("bad_pred")
        self.assert_bad(["predict", "--model", self.path("nope.ntk"), "--x", self.files["xt"], "--out-dir", out],
                        "--model", "nope.ntk")
        corrupt = self.path("corrupt.ntk")
        with open(self.model, "rb") as f:
            data = f.read()
        with open(corrupt, "wb") as f:
            f.write(data[: len(data) // 2])
        before = set(os.listdir(self.tmp.name))
        r = run("predict", "--model", corrupt, "--x", self.files["xt"], "--out-dir", out)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--model", r.stderr)
        os.unlink(corrupt)
        narrow = self.path("narrow.npy")
        np.save(narrow, np.zeros((4, 5)))
        r = run("predict", "--model", self.model, "--x", narrow, "--out-dir", out)
        self.assertEqual(r.returncode, 2)
        self.assertIn("5 features", r.stderr)
        os.unlink(narrow)
        r = run("predict", "--model", self.model, "--x", self.files["xt"], "--out-dir", out, "--uncertainty", "exact")
        self.assertEqual(r.returncode, 2)
        self.assertIn("lambda = 0", r.stderr)
        r = run("predict", "--model", self.model, "--x", self.files["xt"], "--out-dir", out, "--uncertainty", "bayes")
        self.assertEqual(r.returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(out, "logits.npy")))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
