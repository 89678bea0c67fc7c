"""The API's asyncio Redis connections pack commands with hiredis (service/redis_connection.py):
byte for byte what redis-py's own Python packer writes, for every argument type it takes, and
the same replies from a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError
from rq.job import JobStatus as RQStatus

from service.redis_connection import _packing_in_c, async_redis_from_url

COMMANDS = [
    ("SET", "key", "value"),
    ("EVALSHA", "a" * 40, 3, "k1", "k2", "k3", "é ü 漢", b"\x00\xff\r\n", 0, -5, 2**62, ""),
    ("CONFIG GET", "maxmemory"),  # a command name of two words
    (b"CLIENT SETNAME", "glassbox"),
    ("SET", "key", 1.5),  # a float: redis-py's own path
    ("HSET", "h", *[f"field{i}" for i in range(200)]),
    ("SET", "big", "x" * 100_000),  # past redis-py's buffer cutoff, where it splits the output
    ("HSET", "rq:job:1", "status", RQStatus.QUEUED),  # a str enum: its value
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packed_in_c_writes_the_bytes_redis_py_writes(command):
    ours, theirs = _packing_in_c(Connection)(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


def test_what_redis_py_refuses_is_still_refused():
    with pytest.raises(DataError):
        _packing_in_c(Connection)().pack_command("SET", "key", True)


def test_the_url_picks_the_connection_and_the_packing_is_added_to_it():
    assert issubclass(async_redis_from_url("unix:///tmp/redis.sock").connection_pool.connection_class,
                      UnixDomainSocketConnection)  # fmt: skip
    assert issubclass(async_redis_from_url("redis://127.0.0.1:1/0").connection_pool.connection_class, Connection)


def test_a_real_redis_answers_the_same(redis_url):
    async def exchange(client: redis.asyncio.Redis) -> list:
        await client.delete("packing:h", "packing:f")
        pipe = client.pipeline(transaction=False)
        pipe.hset("packing:h", mapping={"é": b"\x00\xff", "n": 7})
        pipe.incrbyfloat("packing:f", 0.1)
        pipe.hgetall("packing:h")
        pipe.eval("return {ARGV[1], ARGV[2], KEYS[1]}", 1, "packing:h", "漢", 12)
        replies = await pipe.execute()
        await client.aclose()
        return replies

    ours = asyncio.run(exchange(async_redis_from_url(redis_url)))
    theirs = asyncio.run(exchange(redis.asyncio.Redis.from_url(redis_url)))
    assert ours == theirs == [2, 0.1, {"é".encode(): b"\x00\xff", b"n": b"7"}, ["漢".encode(), b"12", b"packing:h"]]
