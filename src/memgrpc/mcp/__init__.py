"""`memgrpc mcp`: memgrpc as Model Context Protocol tools for agents.

A client-side layer on the official `mcp` SDK: every tool is a call through memgrpc's own
Python client (memgrpc.client), so it works with any deployment, local or remote. stdio for a
desktop agent (the key from MEMGRPC_API_KEY), Streamable HTTP with `--http` (each request's
bearer token is the memgrpc API key its tool calls use).
"""
