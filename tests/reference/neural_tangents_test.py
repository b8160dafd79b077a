"""ntkctl kernel against neural-tangents (stax, parameterization='ntk', float64) number for number.

Run by CTest with the project's .venv; exits 77 (skipped) when neural-tangents is not installed.
usage: neural_tangents_test.py NTKCTL
"""
import os
import subprocess
import sys
import tempfile
import types
import unittest

import numpy as np

try:
    # neural-tangents 0.6.5 imports its TensorFlow bridge at start-up; nothing here uses it.
    sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from neural_tangents import stax
except ImportError as e:  # pragma: no cover
    print(f"SKIP: neural-tangents unavailable ({e})")
    sys.exit(77)

NTKCTL = sys.argv[1] if len(sys.argv) > 1 else "build/bin/ntkctl"

# (our flags, neural-tangents layer)
ACTIVATIONS = {
    "relu": ([], stax.Relu()),
    "leaky_relu": (["--act-a", "0.2"], stax.LeakyRelu(0.2)),
    "abs": ([], stax.Abs()),
    "abrelu": (["--act-a", "-0.4", "--act-b", "1.3"], stax.ABRelu(-0.4, 1.3)),
    "identity": ([], stax.Identity()),
    "erf": (["--act-a", "1.2", "--act-b", "0.7", "--act-c", "0.1"], stax.Erf(1.2, 0.7, 0.1)),
    "sigmoid_like": ([], stax.Sigmoid_like()),
    "gelu": ([], stax.Gelu(approximate=False)),
    "tanh": ([], stax.ElementwiseNumerical(jnp.tanh, 25, lambda x: 1 - jnp.tanh(x) ** 2)),
    "softplus": ([], stax.ElementwiseNumerical(jax.nn.softplus, 25, jax.nn.sigmoid)),
}

# ABReLU-family layers (a, b): their diagonal is checked against the exact formula below.
KINKED = {ACTIVATIONS[n][1]: ab for n, ab in
          [("relu", (0.0, 1.0)), ("leaky_relu", (0.2, 1.0)), ("abs", (-1.0, 1.0)), ("abrelu", (-0.4, 1.3)),
           ("identity", (1.0, 1.0))]}


def exact_abrelu_diagonal(x, depth, w, b, w_out, b_out, a, bb, which):
    """K(x, x) for phi = a min(u, 0) + b max(u, 0): on identical inputs the angle is 0 in every layer, so
    E[phi(u)^2] = (a^2 + b^2)/2 q and E[phi'(u)^2] = (a^2 + b^2)/2."""
    w_out = w if w_out is None else w_out
    b_out = b if b_out is None else b_out
    c = (a * a + bb * bb) / 2
    q = np.sum(x * x, axis=1) / x.shape[1]
    wl, bl = (w_out, b_out) if depth == 0 else (w, b)
    s = wl ** 2 * q + bl ** 2
    t = s
    for layer in range(depth):
        wl, bl = (w_out, b_out) if layer == depth - 1 else (w, b)
        t = (wl ** 2 * c * s + bl ** 2) + wl ** 2 * c * t
        s = wl ** 2 * c * s + bl ** 2
    return s if which == "nngp" else t


ARCHITECTURES = [  # depth, w_std, b_std, w_std_out, b_std_out
    (0, 1.3, 0.2, None, None),
    (1, 1.0, 0.0, None, None),
    (3, 1.5, 0.1, None, None),
    (2, 1.2, 0.3, 0.8, 0.05),
]


def nt_kernel_fn(layer, depth, w, b, w_out, b_out):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(1, w, b), layer]
    layers.append(stax.Dense(1, w if w_out is None else w_out, b if b_out is None else b_out))
    return stax.serial(*layers)[2]


class NeuralTangentsAgreement(unittest.TestCase):
    worst = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rng = np.random.default_rng(2026)
        cls.x1 = rng.standard_normal((37, 11))
        cls.x2 = rng.standard_normal((23, 11)) * 0.7
        cls.p1 = os.path.join(cls.tmp.name, "x1.npy")
        cls.p2 = os.path.join(cls.tmp.name, "x2.npy")
        np.save(cls.p1, cls.x1)
        np.save(cls.p2, cls.x2)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        for key, err in sorted(cls.worst.items()):
            print(f"  {key:48s} max rel err {err:.2e}")

    def ours(self, name, which, depth, w, b, w_out, b_out, symmetric, dtype="float64"):
        out = os.path.join(self.tmp.name, "k.npy")
        cmd = [NTKCTL, "kernel", "--x1", self.p1, "--kernel", which, "--out", out, "--depth", str(depth),
               "--activation", name, "--w-std", str(w), "--b-std", str(b), "--dtype", dtype, "--backend", "cpu"]
        cmd += ACTIVATIONS[name][0]
        if w_out is not None:
            cmd += ["--w-std-out", str(w_out), "--b-std-out", str(b_out)]
        if not symmetric:
            cmd += ["--x2", self.p2]
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, NTK_LOG_LEVEL="warning"))
        self.assertEqual(r.returncode, 0, r.stderr)
        return np.load(out)

    def check(self, name, tol, dtype="float64"):
        for depth, w, b, w_out, b_out in ARCHITECTURES:
            kernel_fn = nt_kernel_fn(ACTIVATIONS[name][1], depth, w, b, w_out, b_out)
            for symmetric in (False, True):
                ref = kernel_fn(self.x1, None if symmetric else self.x2, ("nngp", "ntk"))
                for which in ("nngp", "ntk"):
                    want = np.asarray(getattr(ref, which))
                    got = self.ours(name, which, depth, w, b, w_out, b_out, symmetric, dtype)
                    self.assertEqual(got.shape, want.shape)
                    if symmetric and ACTIVATIONS[name][1] in KINKED:
                        # On the diagonal neural-tangents forms P - q12^2 from a GEMM x.x and a separate
                        # |x|^2: rounding noise whose square root perturbs the ReLU angle by ~1e-8 and
                        # the NTK by ~1e-9. Ours uses the exact |x|^2/d there (angle exactly 0). Check
                        # the diagonal against the exact identical-input recursion instead, and the
                        # off-diagonal entries against neural-tangents.
                        a, bb = KINKED[ACTIVATIONS[name][1]]
                        exact = exact_abrelu_diagonal(self.x1, depth, w, b, w_out, b_out, a, bb, which)
                        err = float(np.max(np.abs(np.diag(got) - exact)) / np.max(np.abs(exact)))
                        self.worst[f"{name} {dtype} depth={depth} diagonal-exact {which}"] = err
                        self.assertLessEqual(err, tol)
                        diag_nt = float(np.max(np.abs(np.diag(want) - exact)) / np.max(np.abs(exact)))
                        self.worst[f"{name} {dtype} depth={depth} neural-tangents diagonal {which}"] = diag_nt
                        off = ~np.eye(want.shape[0], dtype=bool)
                        got, want = got[off], want[off]
                    if symmetric and name in ("tanh", "softplus"):
                        # At finite degree the quadrature is not symmetric in (x, x'); neural-tangents
                        # fills both triangles, we compute the upper one and mirror it (K stays exactly
                        # symmetric). Compare the triangle both compute.
                        iu = np.triu_indices(want.shape[0])
                        got, want = got[iu], want[iu]
                    err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
                    key = f"{name} {dtype} depth={depth} {'sym' if symmetric else 'gen'} {which}"
                    self.worst[key] = err
                    self.assertLessEqual(err, tol, key)

    def test_relu(self):
        self.check("relu", 1e-10)

    def test_leaky_relu(self):
        self.check("leaky_relu", 1e-10)

    def test_abs(self):
        self.check("abs", 1e-10)

    def test_abrelu(self):
        self.check("abrelu", 1e-10)

    def test_identity(self):
        self.check("identity", 1e-10)

    def test_erf(self):
        self.check("erf", 1e-10)

    def test_sigmoid_like(self):
        self.check("sigmoid_like", 1e-10)

    def test_gelu(self):
        self.check("gelu", 1e-10)

    def test_tanh_quadrature(self):
        self.check("tanh", 1e-10)

    def test_softplus_quadrature(self):
        self.check("softplus", 1e-10)

    def test_float32(self):
        for name in ("relu", "erf", "gelu"):
            self.check(name, 1e-4, dtype="float32")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
