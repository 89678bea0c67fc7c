"""A minimal keep-alive HTTP/1.1 load client for the benchmarks: raw requests on asyncio
streams, so that the client costs the shared 2 cores as little as possible; and what a load
measures (latency percentiles, the server's CPU time)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    server_cpu: float = 0.0  # CPU seconds of the server process during the load, where measured

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu / len(self.latencies) if self.latencies else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def raw_request(method: str, path: str, port: int, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = 0, False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return head


async def _client(port: int, requests: list[bytes], deadline: float, out: LoadResult, seed: int) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            request = requests[rng.randrange(len(requests))]
            start = time.perf_counter()
            writer.write(request)
            head = await _read_response(reader)
            out.latencies.append(time.perf_counter() - start)
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 202")):
                out.errors += 1
    finally:
        writer.close()


def run_load(port: int, requests: list[bytes], clients: int, seconds: float) -> LoadResult:
    """`clients` connections for `seconds`, each sending one of `requests` (drawn at random) after
    the other's answer."""

    async def load() -> LoadResult:
        out = LoadResult()
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, requests, start + seconds, out, i) for i in range(clients)))
        out.elapsed = time.perf_counter() - start
        return out

    return asyncio.run(load())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
