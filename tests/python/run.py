"""Runs the Python client's pytest suite (tests/python) against real servers; exit 77 (skipped) when the
ntkserve package or pytest is not installed in this interpreter (scripts/setup.sh installs both).

usage: run.py NTK_SERVER NTKCTL
"""
import os
import sys

try:
    import ntkserve  # noqa: F401
    import pytest
except ImportError as e:
    print(f"SKIP: {e} (pip install client/python pytest)")
    sys.exit(77)

os.environ["NTK_SERVER_BINARY"] = sys.argv[1]
os.environ["NTKCTL"] = sys.argv[2]
os.environ.setdefault("NTK_LOG_LEVEL", "warning")
sys.exit(pytest.main([os.path.dirname(os.path.abspath(__file__)), "-q", "-p", "no:cacheprovider"]))
