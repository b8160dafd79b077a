"""Fixtures: a real ntk-server started per test module on a free loopback port (no mocks)."""
import os
import sys

import numpy as np
import pytest

ntkserve = pytest.importorskip("ntkserve")


@pytest.fixture(scope="module")
def server():
    with ntkserve.LocalServer(args=("--threads", "2")) as s:
        yield s


@pytest.fixture()
def client(server):
    c = ntkserve.Client(server.address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 6)) * 2
    y = rng.integers(0, 3, 150)
    x = centers[y] + rng.standard_normal((150, 6))
    return x, y
