"""ntkserve: the Python client of ntk-server (Neural Tangent Kernel classifiers with uncertainty)."""
from . import errors, plots  # plots imports matplotlib only when a plot is made
from .client import Client, FitProgress, Job, Prediction, kernel_spec
from .errors import NTKServeError
from .local import LocalServer

__all__ = ["Client", "Job", "FitProgress", "Prediction", "kernel_spec", "LocalServer", "NTKServeError", "errors", "plots"]
__version__ = "0.2.0"
