"""grpc.aio bootstrap, interceptors, health, reflection and shutdown."""
