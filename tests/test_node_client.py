"""The Node.js client in examples/node, run by node's own test runner against a real server.

Skipped when `node` or `npm` is not on PATH. `npm ci` runs only when examples/node/node_modules
is missing (the lockfile pins every package). The server is the in-process one of this module,
on loopback; node runs as an asyncio subprocess so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from memgrpc.server.app import SERVICE_NAMES
from tests import procs
from tests.conftest import NewKey, ServerHandle

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"
NPM_TIMEOUT_S = 240.0
NODE_TIMEOUT_S = 60.0


async def _run(*argv: str, env: dict[str, str], limit_s: float) -> tuple[int, str]:
    return await procs.run(*argv, cwd=EXAMPLE, env=env, limit_s=limit_s)


def _tap_count(output: str, name: str) -> int:
    m = re.search(rf"^# {name} (\d+)$", output, re.MULTILINE)
    assert m is not None, f"no '# {name}' line in node's output:\n{output}"
    return int(m[1])


async def test_node_client(server: ServerHandle, new_key: NewKey) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not on PATH: the Node client example is not tested")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMGRPC_")}
    if not (EXAMPLE / "node_modules").is_dir():
        code, out = await _run(
            npm,
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            env=env,
            limit_s=NPM_TIMEOUT_S,
        )
        assert code == 0, f"npm ci failed in {EXAMPLE}:\n{out}"

    _, key = await new_key(scopes=("read", "write"))
    env |= {"MEMGRPC_ADDR": server.address, "MEMGRPC_API_KEY": key, "NO_COLOR": "1"}
    code, out = await _run(
        node, "--test", "--test-reporter=tap", "test.js", env=env, limit_s=NODE_TIMEOUT_S
    )
    assert code == 0, f"node --test failed:\n{out}"
    assert _tap_count(out, "fail") == 0, out
    assert _tap_count(out, "pass") >= 3, out
    if "memgrpc.v1.ChatService" in SERVICE_NAMES:  # served: the chat test must not skip
        assert _tap_count(out, "skipped") == 0, out
    if "memgrpc.v1.SimulationService" in SERVICE_NAMES:  # served: the run tests ran and passed
        for name in ("simulate streams a run", "a client that leaves the stream resumes"):
            assert re.search(rf"^ok \d+ - {name}", out, re.MULTILINE), out
