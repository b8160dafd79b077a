"""Generates the gRPC stubs from the repository's proto/ into the package at build time.

The ntkserve.v1 protos keep their package path (ntkserve/v1/*.proto -> ntkserve.v1.*_pb2); the Open
Inference Protocol and gRPC health protos are placed under ntkserve._oip and ntkserve._health so that
installing this package adds no top-level 'inference' or 'grpc' modules.
"""
import os
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.environ.get("NTKSERVE_PROTO_DIR", os.path.join(HERE, "..", "..", "proto"))


def generate(out_dir):
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as staging:
        placed = {
            "ntkserve/v1/common.proto": "ntkserve/v1/common.proto",
            "ntkserve/v1/dataset.proto": "ntkserve/v1/dataset.proto",
            "ntkserve/v1/model.proto": "ntkserve/v1/model.proto",
            "ntkserve/v1/predict.proto": "ntkserve/v1/predict.proto",
            "ntkserve/v1/kernel.proto": "ntkserve/v1/kernel.proto",
            "ntkserve/v1/server.proto": "ntkserve/v1/server.proto",
            "inference/grpc_service.proto": "ntkserve/_oip/grpc_service.proto",
            "grpc/health/v1/health.proto": "ntkserve/_health/health.proto",
        }
        for source, target in placed.items():
            path = os.path.join(PROTO, source)
            if not os.path.exists(path):
                raise SystemExit(f"ntkserve: cannot find {path} (set NTKSERVE_PROTO_DIR to the repository's proto/)")
            os.makedirs(os.path.join(staging, os.path.dirname(target)), exist_ok=True)
            shutil.copy(path, os.path.join(staging, target))
        for target in placed.values():
            rc = protoc.main(["protoc", f"-I{staging}", f"-I{include}", f"--python_out={out_dir}",
                              f"--grpc_python_out={out_dir}", os.path.join(staging, target)])
            if rc != 0:
                raise SystemExit(f"ntkserve: protoc failed on {target}")
    for sub in ("ntkserve/v1", "ntkserve/_oip", "ntkserve/_health"):
        init = os.path.join(out_dir, sub, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()


class BuildWithStubs(build_py):
    def run(self):
        generate(HERE)  # in the source tree too, so that editable installs and the tests see them
        super().run()


# setuptools checks the package directories before build_py runs: generate first.
generate(HERE)
setup(cmdclass={"build_py": BuildWithStubs})
