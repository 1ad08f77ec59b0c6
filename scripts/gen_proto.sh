#!/usr/bin/env bash
# Regenerates the Python code of the bridge protocol from fss/bridge/proto/fss/v1/fss.proto.
# The output is checked in; tests/bridge/test_proto_generated.py fails when it is stale.
# Usage: bash scripts/gen_proto.sh [OUT_DIR]   (default: the package itself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-fss/bridge/proto}"
mkdir -p "$out"
python="${PYTHON:-python3}"
"$python" -m grpc_tools.protoc \
    -I fss/bridge/proto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    fss/bridge/proto/fss/v1/fss.proto
# grpc_tools writes `from fss.v1 import fss_pb2`; inside the package it is fss.bridge.proto.fss.v1.
sed -i 's/^from fss\.v1 import fss_pb2 as/from fss.bridge.proto.fss.v1 import fss_pb2 as/' \
    "$out/fss/v1/fss_pb2_grpc.py"
