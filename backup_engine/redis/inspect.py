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


def _value(client: redislib.Redis, key: bytes, kind: str) -> object:
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return sorted(client.hgetall(key).items())
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return client.xrange(key)
    return client.dump(key)


def fingerprint(target: RedisTarget) -> RedisFingerprint:
    with target.client() as probe:
        dbs = [int(db[2:]) for db in probe.info("keyspace") if str(db).startswith("db")]
    digest = hashlib.sha256()
    types: dict[str, int] = {}
    ttls: dict[str, int] = {}
    count = 0
    for db in sorted(dbs):
        client = target.client(db=db)
        for key in sorted(client.scan_iter(count=1000)):
            raw_kind = client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            digest.update(repr((db, key, kind, _value(client, key, kind))).encode())
            types[kind] = types.get(kind, 0) + 1
            ttl = int(client.pttl(key))
            if ttl >= 0:
                ttls[f"{db}:{key.decode(errors='replace')}"] = ttl
            count += 1
    return RedisFingerprint(count, digest.hexdigest(), types, ttls)
