"""The README's code blocks, run as written against a real server, as a new user would run them.

A block marked `<!-- readme-test: sh|python|js -->` (the line before its fence) is meant to run.
The sh blocks run in one bash, one after the other as if pasted into one terminal, in a
directory laid out like the checkout (`.venv`, and `data/` of a server started like `make
serve`: its bootstrap key generated and written to data/admin.key), with `.venv/bin` off the
PATH so `source .venv/bin/activate` has to do its job. The only change is the address:
127.0.0.1:50051 becomes the test server's loopback port. The Python and JS blocks then run with
`MEMGRPC_API_KEY` set to the key the walk-through made (the README says to export it); JS only
when node and npm are installed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.v1 import memory_pb2, memory_pb2_grpc
from tests import procs
from tests.conftest import make_config
from tests.helpers import md
from tests.test_node_client import EXAMPLE, NPM_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_ADDR = "127.0.0.1:50051"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
RUN_TIMEOUT_S = 180.0


def blocks(kind: str) -> list[str]:
    found = []
    for marked, fence, code in BLOCK.findall(README.read_text("utf-8")):
        assert marked == fence, f"a block marked {marked} is fenced as {fence}"
        if marked == kind:
            found.append(code)
    return found


async def run(
    *argv: str, cwd: Path, env: dict[str, str], limit_s: float = RUN_TIMEOUT_S
) -> tuple[int, str]:
    return await procs.run(*argv, cwd=cwd, env=env, limit_s=limit_s)


def user_env(**extra: str) -> dict[str, str]:
    """This environment as a fresh shell has it: no venv on PATH, no MEMGRPC_* settings."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMGRPC_")}
    env.pop("VIRTUAL_ENV", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env["PATH"] = os.pathsep.join(path or ["/usr/bin", "/bin"])
    return env | extra


@dataclass
class Walkthrough:
    running: RunningServer
    admin_key: str
    key: str  # the app's key the walk-through created
    output: str


@pytest.fixture(scope="module")
async def walkthrough(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[Walkthrough]:
    checkout = tmp_path_factory.mktemp("checkout")
    (checkout / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # no MEMGRPC_ADMIN_KEY: the server makes the bootstrap key and writes data/admin.key
    running = await start(make_config(checkout / "data", None), embedder=shared_embedder)
    try:
        admin_key = (checkout / "data" / "admin.key").read_text().strip()
        script = "\n".join(blocks("sh")).replace(DOC_ADDR, running.address)
        script += '\necho "readme-test KEY=$KEY"\n'
        code, out = await run(
            "bash", "-e", "-o", "pipefail", "-c", script, cwd=checkout, env=user_env()
        )
        assert code == 0, f"the README's sh blocks failed:\n{out}"
        found = re.search(r"^readme-test KEY=(\S+)$", out, re.MULTILINE)
        assert found is not None, out
        yield Walkthrough(running, admin_key, found[1], out)
    finally:
        await running.stop(1.0)


def test_the_runnable_blocks_are_marked() -> None:
    assert len(blocks("sh")) == 5 and len(blocks("python")) == 2 and len(blocks("js")) == 1
    assert "source .venv/bin/activate" in blocks("sh")[0]


async def test_walkthrough_runs_with_the_apps_own_key(walkthrough: Walkthrough) -> None:
    out = walkthrough.output
    assert "memgrpc.v1.MemoryService" in out and '"status": "SERVING"' in out
    assert re.search(r"^project prj_\w+, key \S+$", out, re.MULTILINE), out
    assert walkthrough.key != walkthrough.admin_key
    assert '"content": "User prefers dark mode"' in out
    assert "Berlin" in out  # GetContext found the session's messages
    assert '"action.event_type": "page_view"' in out  # RecordAction, then filtered by anchor
    assert out.count('"anchor.city": "Berlin"') >= 2
    assert '"name": "personal_info"' in out and '"name": "travel"' in out  # List/SetCategories
    # memory intelligence: the processed session's facts, the profile, ExtractProfile
    assert re.search(r'"facts_added": [1-9]', out), out
    assert re.search(r'"location": \{\s*"value": "Lyon"', out), out
    assert "User is allergic to shellfish" in out or "shellfish" in out
    assert '"slot": "location"' in out and '"value": "Kuching"' in out
    # the memory is in the app's project, not in `default`
    async with grpc.aio.insecure_channel(walkthrough.running.address) as ch:
        stub = memory_pb2_grpc.MemoryServiceStub(ch)
        request = memory_pb2.ListMemoriesRequest(user_id="alice")
        mine = await stub.ListMemories(request, metadata=md(walkthrough.key))
        default = await stub.ListMemories(request, metadata=md(walkthrough.admin_key))
    assert [m.content for m in mine.memories] == ["User prefers dark mode"]
    assert list(default.memories) == []


async def test_python_blocks(walkthrough: Walkthrough, tmp_path: Path) -> None:
    env = user_env(MEMGRPC_API_KEY=walkthrough.key)
    outputs = []
    for code_text in blocks("python"):
        code = code_text.replace(DOC_ADDR, walkthrough.running.address)
        rc, out = await run(sys.executable, "-c", code, cwd=tmp_path, env=env)
        assert rc == 0, f"a README Python block failed:\n{code}\n---\n{out}"
        outputs.append(out)
    client, errors = outputs
    assert "User prefers dark mode" in client and "Berlin" in client and "[done]" in client
    assert "MEMORY_NOT_FOUND" in errors
    assert "'field': 'memory.content'" in errors and "'field': 'memory.type'" in errors


async def test_js_block(walkthrough: Walkthrough) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not on PATH: the README's JS block is not run")
    env = user_env()
    if not (EXAMPLE / "node_modules").is_dir():
        argv = (npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
        rc, out = await run(*argv, cwd=EXAMPLE, env=env, limit_s=NPM_TIMEOUT_S)
        assert rc == 0, f"npm ci failed in {EXAMPLE}:\n{out}"
    (code,) = blocks("js")
    code = code.replace(DOC_ADDR, walkthrough.running.address)
    env |= {"MEMGRPC_API_KEY": walkthrough.key, "NO_COLOR": "1"}
    rc, out = await run(node, "-e", code, cwd=EXAMPLE, env=env)
    assert rc == 0, f"the README's JS block failed:\n{out}"
    first, _, reply = out.partition("\n")
    assert first == "User prefers dark mode" and reply.strip(), (
        out
    )  # the hit, then a streamed reply
    # then a simulation streamed to its end, replayed from index 3, and its run
    assert "[0] run_started: " in out and re.search(r"^\[\d+\] run_completed: ", out, re.M), out
    assert "again [2]" not in out and "again [3] " in out, out
    assert out.rstrip().endswith("RUN_STATUS_COMPLETED"), out
