"""Imports only point down (ARCHITECTURE.md): server -> api -> core -> store/embed/llm."""

from __future__ import annotations

import ast
from pathlib import Path

import memgrpc

ROOT = Path(memgrpc.__file__).parent
# what each layer may import besides itself (top-level packages of memgrpc, and gRPC itself);
# api never touches LanceDB (store), core knows nothing of gRPC or the wire (v1)
MAY_IMPORT = {
    "api": {"core", "llm", "embed", "v1", "grpc", "google", "tracing"},
    "core": {"store", "embed", "llm", "tracing"},
    "store": {"tracing"},
    "embed": {"tracing"},
    "llm": {"tracing"},
    "mcp": {"client"},  # a client-side layer: memgrpc only through its Python client
}
LAYERS = {
    "server",
    "api",
    "core",
    "store",
    "embed",
    "llm",
    "client",
    "v1",
    "cli",
    "transfer_cli",
    "mcp",
}


def _imports(source: str, package: tuple[str, ...]) -> set[str]:
    """Top-level names a module of `package` imports: memgrpc's layers by name, gRPC as itself
    (imports inside functions and under TYPE_CHECKING count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "memgrpc" and len(parts) > 1:
                out.add(parts[1])
            elif parts[0] in ("grpc", "grpc_status", "google"):
                out.add("grpc" if parts[0] == "grpc_status" else parts[0])
    return out


def test_no_upward_import_between_layers() -> None:
    wrong: list[str] = []
    checked = 0
    for path in sorted(ROOT.rglob("*.py")):
        layer = path.relative_to(ROOT).parts[0]
        if layer not in MAY_IMPORT:
            continue
        checked += 1
        package = path.relative_to(ROOT.parent).parts[:-1]
        found = _imports(path.read_text(encoding="utf-8"), package)
        for name in sorted(found - MAY_IMPORT[layer] - {layer}):
            if name in LAYERS | {"grpc", "google"}:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert checked > 50  # the walk found the package
    assert wrong == []


def test_the_walk_sees_an_upward_import() -> None:
    """The checker itself: an import of server is seen, relative, absolute or lazy."""
    for source in (
        "from ..server import errors",
        "from memgrpc.server.errors import abort",
        "import memgrpc.server.app",
        "def f():\n    from memgrpc import server",
    ):
        assert "server" in _imports(source, ("memgrpc", "api")), source
    assert _imports("from . import convert", ("memgrpc", "api")) == {"api"}
