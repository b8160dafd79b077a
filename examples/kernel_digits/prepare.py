"""Writes scikit-learn's bundled digits (no download) as .npy files for ntkctl: a stratified
train/test split, features scaled to unit norm per row times sqrt(d) (so x.x/d is about 1)."""
import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

out = sys.argv[1] if len(sys.argv) > 1 else "out/digits"
os.makedirs(out, exist_ok=True)
x, y = load_digits(return_X_y=True)
x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
for name, a in [("x_train", x_train), ("x_test", x_test), ("y_train", y_train), ("y_test", y_test)]:
    np.save(os.path.join(out, name + ".npy"), a)
print(f"digits: {len(x_train)} train, {len(x_test)} test, d = {x.shape[1]} -> {out}")
