"""A fingerprint of a whole Redis dataset: key count, types, TTLs and a digest of every value,
so a restore can be proven equal to what was backed up."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis as redislib

from backup_engine.redis.target import RedisTarget


@dataclass(frozen=True)
class RedisFingerprint:
    keys: int
    digest: str  # sha256 over every (db, key, type, value), in key order
    types: dict[str, int]  # type -> number of keys
    ttls: dict[str, int]  # "db:key" -> milliseconds left, for keys that expire


def _queue_value(pipe: redislib.client.Pipeline, key: bytes, kind: str) -> None:
    if kind == "string":
        pipe.get(key)
    elif kind == "hash":
        pipe.hgetall(key)
    elif kind == "list":
        pipe.lrange(key, 0, -1)
    elif kind == "set":
        pipe.smembers(key)
    elif kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == "stream":
        pipe.xrange(key)
    else:
        pipe.dump(key)


def _canonical(value: object) -> object:
    """Order-free containers (hashes, sets) in a fixed order."""
    if isinstance(value, dict):
        return sorted(value.items())
    if isinstance(value, set):
        return sorted(value)
    return value


def fingerprint(target: RedisTarget, *, batch: int = 500) -> RedisFingerprint:
    with target.client() as probe:
        dbs = [int(db[2:]) for db in probe.info("keyspace") if str(db).startswith("db")]
    digest = hashlib.sha256()
    types: dict[str, int] = {}
    ttls: dict[str, int] = {}
    count = 0
    for db in sorted(dbs):
        client = target.client(db=db)
        keys = sorted(client.scan_iter(count=1000))
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.type(key)
            kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in pipe.execute()]
            pipe = client.pipeline(transaction=False)
            for key, kind in zip(chunk, kinds, strict=True):
                _queue_value(pipe, key, kind)
                pipe.pttl(key)
            answers = pipe.execute()
            for key, kind, value, ttl in zip(
                chunk, kinds, answers[0::2], answers[1::2], strict=True
            ):
                digest.update(repr((db, key, kind, _canonical(value))).encode())
                types[kind] = types.get(kind, 0) + 1
                if int(ttl) >= 0:
                    ttls[f"{db}:{key.decode(errors='replace')}"] = int(ttl)
                count += 1
    return RedisFingerprint(count, digest.hexdigest(), types, ttls)
