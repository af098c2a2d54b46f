"""Servers as separate processes (memgrpc replicas, moto's S3), for crash and replica tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def run(*argv: str, cwd: Path, env: dict[str, str], limit_s: float) -> tuple[int, str]:
    """Run a command to its end: (exit code, stdout and stderr together); fails the test when
    it outlives `limit_s`."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(argv)} did not finish within {limit_s:.0f} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_memgrpc(
    data: str, port: int, log: Path, admin_key: str, **env: str
) -> subprocess.Popen[bytes]:
    """`python -m memgrpc serve` on 127.0.0.1:port; extra env as MEMGRPC_* keyword arguments."""
    full_env = dict(os.environ, MEMGRPC_ADMIN_KEY=admin_key, **env)
    return subprocess.Popen(
        [sys.executable, "-m", "memgrpc", "serve", "--addr", f"127.0.0.1:{port}", "--data", data],
        env=full_env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def wait_serving(addr: str, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited during start-up"
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("server did not become healthy")


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_moto(port: int, bucket: str) -> subprocess.Popen[bytes]:
    """moto's S3 server on 127.0.0.1:port with one bucket made."""
    import boto3

    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    for _ in range(150):
        try:
            s3.create_bucket(Bucket=bucket)
            return proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("moto did not start")
