"""Status numbers of domain errors: each error names its google.rpc.Code (core/kernel/errors.py),
this turns the name into the wire number, so servicers and server/errors.py read one mapping."""

from __future__ import annotations

from google.rpc import code_pb2

from memgrpc.core.kernel import DomainError


def code(name: str) -> int:
    """The google.rpc.Code number of a status name (e.g. a stored chat failure's)."""
    return int(code_pb2.Code.Value(name))


def code_of(err: DomainError) -> int:
    """The status number `err` is reported with."""
    return code(err.code)
