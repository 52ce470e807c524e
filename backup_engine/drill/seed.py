"""A small, realistic application schema to back up and lose in drills.

users <- sessions (FK, cascade) and users <- orders (FK), with indexes, a unique constraint,
JSONB, bytea and timestamps, so a restore that drops types, constraints or TOAST data shows up
in the table fingerprints.
"""

from __future__ import annotations

from backup_engine.postgres.connection import connect

SHOP_SCHEMA = """
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    profile     jsonb NOT NULL DEFAULT '{}',
    avatar      bytea,
    created_at  timestamptz NOT NULL
);
CREATE TABLE sessions (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token       text NOT NULL UNIQUE,
    user_agent  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE TABLE orders (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    total_cents  integer NOT NULL CHECK (total_cents >= 0),
    status       text NOT NULL,
    placed_at    timestamptz NOT NULL
);
CREATE INDEX orders_user_id_idx ON orders (user_id);
"""

# setseed makes a given size produce the same data every run; random() gives it variety.
_FILL = """
SELECT setseed(%(seed)s);
INSERT INTO users (email, name, profile, avatar, created_at)
SELECT 'user' || i || '@example.com',
       'User ' || i,
       jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + (random() * 2)::int],
                          'bio', repeat(md5(random()::text), 1 + (random() * 4)::int)),
       CASE WHEN i %% 10 = 0 THEN decode(repeat(md5(i::text), 64), 'hex') END,
       timestamptz '2026-01-01 00:00:00+00' + (i || ' minutes')::interval
FROM generate_series(1, %(users)s) AS i;
INSERT INTO sessions (user_id, token, user_agent, created_at, expires_at)
SELECT u.id, md5(u.id::text || '-' || s || '-' || random()::text),
       (ARRAY['Firefox','Chrome','Safari','curl'])[1 + (random() * 3)::int],
       u.created_at + (s || ' hours')::interval,
       u.created_at + (s || ' hours')::interval + interval '30 days'
FROM users u, generate_series(1, 3) AS s;
INSERT INTO orders (user_id, total_cents, status, placed_at)
SELECT u.id, (random() * 50000)::int,
       (ARRAY['paid','shipped','refunded'])[1 + (random() * 2)::int],
       u.created_at + (o || ' days')::interval
FROM users u, generate_series(1, 2) AS o;
ANALYZE;
"""


def seed_shop(dsn: str, *, users: int, seed: float = 0.42) -> None:
    """Create the shop schema with `users` users, 3 sessions and 2 orders each."""
    with connect(dsn) as conn:
        conn.execute(SHOP_SCHEMA)
        for statement in _FILL.split(";\n"):
            if statement.strip():
                params = {"seed": seed, "users": users} if "%(" in statement else None
                conn.execute(statement, params)
