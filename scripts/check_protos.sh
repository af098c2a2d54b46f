#!/usr/bin/env bash
# Fails if src/memgrpc/v1 differs from what protos/ generate (run `make proto` and commit).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PYTHON=${PYTHON:-.venv/bin/python} scripts/gen_protos.sh "$tmp" >/dev/null 2>&1
if ! diff -r -q -x __pycache__ "$tmp/memgrpc/v1" src/memgrpc/v1; then
  echo "generated code drifted from protos/: run 'make proto' and commit" >&2
  exit 1
fi
echo "generated code matches protos/"
