"""ntkctl kernel end to end: real .npy files in, a real process, exit codes and messages out.

usage: ntkctl_kernel_test.py NTKCTL
"""
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


def run(*args):
    return subprocess.run([NTKCTL, *args], capture_output=True, text=True,
                          env=dict(os.environ, NTK_LOG_LEVEL="warning"))


class KernelCommand(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        rng = np.random.default_rng(5)
        self.x = rng.standard_normal((30, 6))
        self.save("x.npy", self.x)
        self.save("y.npy", rng.standard_normal((12, 6)))

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def save(self, name, array):
        np.save(self.path(name), array)
        return self.path(name)

    def assert_bad_input(self, args, *needles):
        out = self.path("out.npy")
        before = set(os.listdir(self.dir))
        r = run("kernel", *args, "--out", out)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        for needle in needles:
            self.assertIn(needle, lines[0])
        self.assertFalse(os.path.exists(out), "a failed run left an output file")
        self.assertEqual(set(os.listdir(self.dir)), before, "a failed run left a file behind")

    def test_writes_symmetric_and_general_kernels(self):
        out = self.path("k.npy")
        r = run("kernel", "--x1", self.path("x.npy"), "--out", out, "--depth", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        k = np.load(out)
        self.assertEqual(k.shape, (30, 30))
        self.assertEqual(k.dtype, np.float64)
        np.testing.assert_array_equal(k, k.T)
        r = run("kernel", "--x1", self.path("x.npy"), "--x2", self.path("y.npy"), "--kernel", "nngp",
                "--out", out, "--dtype", "float32")
        self.assertEqual(r.returncode, 0, r.stderr)
        k = np.load(out)
        self.assertEqual(k.shape, (30, 12))
        self.assertEqual(k.dtype, np.float32)

    def test_diagonal_matches_matrix(self):
        full, diag = self.path("full.npy"), self.path("diag.npy")
        self.assertEqual(run("kernel", "--x1", self.path("x.npy"), "--out", full, "--activation", "gelu").returncode, 0)
        self.assertEqual(run("kernel", "--x1", self.path("x.npy"), "--out", diag, "--activation", "gelu",
                             "--diagonal").returncode, 0)
        np.testing.assert_array_equal(np.load(diag), np.diag(np.load(full)))

    def test_threads_and_tiles_do_not_change_results(self):
        a, b = self.path("a.npy"), self.path("b.npy")
        self.assertEqual(run("kernel", "--x1", self.path("x.npy"), "--x2", self.path("y.npy"), "--out", a,
                             "--threads", "1", "--tile", "5").returncode, 0)
        self.assertEqual(run("kernel", "--x1", self.path("x.npy"), "--x2", self.path("y.npy"), "--out", b,
                             "--threads", "2", "--tile", "64").returncode, 0)
        np.testing.assert_allclose(np.load(a), np.load(b), rtol=1e-14, atol=0)

    def test_depth_zero_is_the_linear_kernel(self):
        out = self.path("k.npy")
        r = run("kernel", "--x1", self.path("x.npy"), "--out", out, "--depth", "0", "--w-std", "1.5",
                "--b-std", "0.5", "--kernel", "nngp")
        self.assertEqual(r.returncode, 0, r.stderr)
        want = 1.5 ** 2 * self.x @ self.x.T / self.x.shape[1] + 0.25
        np.testing.assert_allclose(np.load(out), want, rtol=1e-13)

    def test_missing_file(self):
        self.assert_bad_input(["--x1", self.path("nope.npy")], "--x1", "nope.npy", "does not exist")

    def test_wrong_dtype(self):
        self.assert_bad_input(["--x1", self.save("i.npy", np.arange(12).reshape(3, 4))], "--x1", "int64")
        self.assert_bad_input(["--x1", self.save("c.npy", np.ones((3, 4), dtype=np.complex128))], "--x1", "<c16")

    def test_not_two_dimensional(self):
        self.assert_bad_input(["--x1", self.save("v.npy", np.ones(5))], "--x1", "2-D")
        self.assert_bad_input(["--x1", self.save("t.npy", np.ones((2, 3, 4)))], "--x1", "2-D")

    def test_feature_dimensions_differ(self):
        self.assert_bad_input(["--x1", self.path("x.npy"), "--x2", self.save("z.npy", np.ones((4, 5)))],
                              "feature dimensions differ", "6", "5")

    def test_nan_and_inf(self):
        bad = self.x.copy()
        bad[4, 2] = np.nan
        self.assert_bad_input(["--x1", self.save("nan.npy", bad)], "--x1", "NaN", "row 4", "column 2")
        bad[4, 2] = np.inf
        self.assert_bad_input(["--x1", self.path("x.npy"), "--x2", self.save("inf.npy", bad)],
                              "--x2", "Inf", "row 4", "column 2")

    def test_unknown_activation_and_bad_flags(self):
        self.assert_bad_input(["--x1", self.path("x.npy"), "--activation", "swish"], "--activation", "swish")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--act-b", "2"], "--act-b", "relu")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--w-std", "0"], "--w-std")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--w-std", "abc"], "--w-std", "abc")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--depth", "-1"], "--depth")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--dtype", "float16"], "--dtype")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--kernel", "cntk"], "--kernel")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--colour", "red"], "--colour")
        self.assert_bad_input(["--x1", self.path("x.npy"), "--backend", "tpu"], "tpu")

    def test_truncated_file(self):
        with open(self.path("x.npy"), "rb") as f:
            data = f.read()
        with open(self.path("cut.npy"), "wb") as f:
            f.write(data[: len(data) - 100])
        self.assert_bad_input(["--x1", self.path("cut.npy")], "--x1", "truncated")

    def test_output_directory_missing(self):
        r = run("kernel", "--x1", self.path("x.npy"), "--out", self.path("no/such/dir/k.npy"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("does not exist", r.stderr)

    def test_no_arguments_and_help(self):
        self.assertEqual(run().returncode, 2)
        r = run("kernel", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--x1", r.stdout)
        self.assertIn("--activation", r.stdout)
        self.assertEqual(run("frobnicate").returncode, 2)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
