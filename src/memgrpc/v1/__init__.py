"""Generated from protos/memgrpc/v1 by scripts/gen_protos.sh. Do not edit."""
