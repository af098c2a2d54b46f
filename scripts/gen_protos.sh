#!/usr/bin/env bash
# Regenerates src/memgrpc/v1 from protos/ (protoc via grpcio-tools, mypy stubs via mypy-protobuf).
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: src/memgrpc/v1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-src}
mkdir -p "$OUT/memgrpc/v1"
"$PY" -m grpc_tools.protoc -I protos \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
  --plugin=protoc-gen-mypy="$(dirname "$PY")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$PY")/protoc-gen-mypy_grpc" \
  protos/memgrpc/v1/*.proto
# generated modules import each other as `memgrpc.v1.x_pb2`, which is our package path already
printf '"""Generated from protos/memgrpc/v1 by scripts/gen_protos.sh. Do not edit."""\n' > "$OUT/memgrpc/v1/__init__.py"
