"""memgrpc: a self-hosted memory layer for AI applications, served over gRPC."""

__version__ = "0.1.0"
