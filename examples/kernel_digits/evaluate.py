"""Uses the NTK matrices written by ntkctl: the infinite network trained to convergence on the mean
squared error (kernel regression on one-hot targets), its test accuracy, and the kernel's spectrum.
(The cross-entropy classifier of the paper is ntkctl fit/predict, a later part of the product.)"""
import os
import sys

import numpy as np

d = sys.argv[1] if len(sys.argv) > 1 else "out/digits"
k_train = np.load(os.path.join(d, "k_train.npy"))
k_test = np.load(os.path.join(d, "k_test.npy"))
y_train = np.load(os.path.join(d, "y_train.npy"))
y_test = np.load(os.path.join(d, "y_test.npy"))
targets = np.eye(10)[y_train]
eig = np.linalg.eigvalsh(k_train)
ridge = 1e-6 * np.trace(k_train) / len(k_train)
alpha = np.linalg.solve(k_train + ridge * np.eye(len(k_train)), targets)
accuracy = np.mean((k_test @ alpha).argmax(1) == y_test)
print(f"NTK {k_train.shape[0]}x{k_train.shape[1]} symmetric={np.array_equal(k_train, k_train.T)}, "
      f"eigenvalues in [{eig[0]:.3e}, {eig[-1]:.3e}]")
print(f"infinite-width MSE-trained network (NTK regression): test accuracy {accuracy:.4f} on {len(y_test)} digits")
