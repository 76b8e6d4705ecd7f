"""Compiles proto/demo.proto with grpc_tools into a temporary directory and imports it."""

import importlib
import os
import sys
import tempfile

from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load():
    """Returns the (demo_pb2, demo_pb2_grpc) modules."""
    out = tempfile.mkdtemp(prefix="ctxkit-demo-pb-")
    rc = protoc.main([
        "grpc_tools.protoc",
        "-I" + PROTO_DIR,
        "--python_out=" + out,
        "--grpc_python_out=" + out,
        "demo.proto",
    ])
    if rc != 0:
        raise SystemExit("protoc failed: %d" % rc)
    sys.path.insert(0, out)
    return importlib.import_module("demo_pb2"), importlib.import_module("demo_pb2_grpc")
