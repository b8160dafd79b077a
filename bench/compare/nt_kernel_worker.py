"""One neural-tangents configuration, timed in its own process (XLA's thread count and x64 are fixed at
start-up). usage: nt_kernel_worker.py X.npy DTYPE REPS OUT.json [SAVE_PREFIX]

Times kernel_fn(x, None, 'ntk') of the depth-3 ReLU network under jax.jit, and nt.batch of it with
batch sizes N/4 and N/2, each warmed up (compiled) first; median of REPS. With SAVE_PREFIX, also writes
the NTK and NNGP (one untimed call) as SAVE_PREFIX_ntk.npy / SAVE_PREFIX_nngp.npy."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import import_neural_tangents, median  # noqa: E402

import numpy as np  # noqa: E402

x_path, dtype, reps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
save = sys.argv[5] if len(sys.argv) > 5 else None
jax, nt = import_neural_tangents(dtype == "float64")
from neural_tangents import stax  # noqa: E402

W_STD, B_STD, DEPTH = 1.5, 0.1, 3
# The width (512) does not enter the infinite-width kernel; parameterization='ntk' is stax's default.
_, _, kernel_fn = stax.serial(*[stax.Dense(512, W_STD, B_STD, parameterization="ntk"), stax.Relu()] * DEPTH,
                              stax.Dense(1, W_STD, B_STD, parameterization="ntk"))
x = np.load(x_path).astype(dtype)
n = x.shape[0]
xj = jax.device_put(x)

variants = {"jit": jax.jit(kernel_fn, static_argnames="get")}
for b in (n // 4, n // 2):
    variants[f"batch{b}"] = nt.batch(kernel_fn, batch_size=b)

result = {"dtype": dtype, "n": n, "backend": jax.default_backend(), "jax": jax.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "variants": {}}
for name, fn in variants.items():
    t = time.perf_counter()
    k = fn(xj, None, get="ntk")
    k.block_until_ready()
    first = time.perf_counter() - t
    assert k.dtype == np.dtype(dtype), (k.dtype, dtype)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(xj, None, get="ntk").block_until_ready()
        times.append(time.perf_counter() - t)
    result["variants"][name] = {"first_call_s": first, "times_s": times, "median_s": median(times),
                                "load": os.getloadavg()[0]}
    del k
if save:
    both = variants["jit"](xj, None, get=("nngp", "ntk"))
    np.save(save + "_ntk.npy", np.asarray(both.ntk))
    np.save(save + "_nngp.npy", np.asarray(both.nngp))
with open(out, "w") as f:
    json.dump(result, f, indent=1)
