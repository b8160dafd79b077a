"""Summarizes ntkctl's predictions with uncertainty: is the model less sure where it is wrong?"""
import os
import sys

import numpy as np

d = sys.argv[1] if len(sys.argv) > 1 else "out/digits"
p = os.path.join(d, "predictions")
y = np.load(os.path.join(d, "y_test.npy"))
classes = np.load(os.path.join(p, "classes.npy"))
mi = np.load(os.path.join(p, "mutual_info.npy"))
entropy = np.load(os.path.join(p, "entropy.npy"))
var = np.load(os.path.join(p, "logit_var.npy"))
right = classes == y
print(f"test accuracy {right.mean():.4f} on {len(y)} digits")
print(f"mean logit std over initialization {np.sqrt(var).mean():.3f}")
for name, v in [("predictive entropy", entropy), ("mutual information", mi)]:
    wrong = v[~right].mean() if (~right).any() else float("nan")
    print(f"{name:20s} correct {v[right].mean():.4f}  wrong {wrong:.4f}")
