"""Each core package opens with its docstring and exports its API; none of them, imported first
in a fresh interpreter, runs into an import cycle."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["kernel", "access", "memory", "conversation", "chat", "intelligence"]
# modules on the cross-package edges (memory.service -> conversation.activity, conversation ->
# memory, chat -> both): each is the first import somewhere (a test, a script)
ENTRY_POINTS = [
    *PACKAGES,
    "kernel.validation",
    "kernel.paging",
    "memory.model",
    "memory.service",
    "conversation.activity",
    "conversation.records",
    "conversation.sessions",
    "intelligence.processing",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_its_api(name: str) -> None:
    pkg = importlib.import_module(f"memgrpc.core.{name}")
    assert pkg.__doc__ and pkg.__doc__.strip()
    assert pkg.__all__, f"core.{name} exports nothing"
    missing = [n for n in pkg.__all__ if not hasattr(pkg, n)]
    assert missing == []
    assert len(set(pkg.__all__)) == len(pkg.__all__)


# one fresh interpreter; before each entry point every memgrpc module is forgotten, so each is
# imported first (third-party modules stay loaded: a cycle can only run through ours)
_FIRST_IMPORTS = """
import importlib, sys
failed = {}
for entry in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "memgrpc" or m.startswith("memgrpc.")]:
        del sys.modules[name]
    try:
        importlib.import_module("memgrpc.core." + entry)
    except ImportError as exc:
        failed[entry] = str(exc)
print(failed)
"""


def test_every_entry_point_imports_first_without_a_cycle() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_IMPORTS, *ENTRY_POINTS],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "{}"
