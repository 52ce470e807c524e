"""A Redis dataset for drills: every data type, keys with TTLs, several databases."""

from __future__ import annotations

from backup_engine.redis.target import RedisTarget

TTL_SECONDS = 3600


def seed_redis(target: RedisTarget, *, plain_keys: int) -> None:
    client = target.client()
    with client.pipeline(transaction=False) as pipe:
        pipe.set("config:greeting", "héllo wörld")
        pipe.set("binary:blob", bytes(range(256)) * 4)
        pipe.hset("user:1", mapping={"name": "Ada", "plan": "pro", "visits": 42})
        pipe.rpush("queue:emails", *[f"mail-{i}" for i in range(50)])
        pipe.sadd("tags", "red", "green", "blue")
        pipe.zadd("leaderboard", {f"player-{i}": i * 1.5 for i in range(30)})
        pipe.xadd("events", {"type": "signup", "user": "1"})
        pipe.set("session:abc", "token", ex=TTL_SECONDS)
        pipe.hset("cart:9", mapping={"sku": "A-1", "qty": 2})
        pipe.expire("cart:9", TTL_SECONDS * 2)
        for i in range(plain_keys):
            pipe.set(f"cache:{i}", f"value-{i}" * 8)
        pipe.execute()
    target.client(db=2).set("other-db:key", "lives in db 2")
