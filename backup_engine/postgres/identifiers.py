"""Table names as operators type them, and as PostgreSQL and pg_dump need them.

`orders`, `public.orders`, `"Orders"` (ORMs such as Prisma create mixed-case tables),
`app."order items"`, `"my.schema"."a""b"`: unquoted parts fold to lower case as in SQL, quoted
parts are taken as written. Names are never pasted into SQL: queries use psycopg's
`sql.Identifier`, and pg_dump gets a fully quoted pattern, in which nothing is a wildcard.
"""

from __future__ import annotations

import re

from backup_engine.errors import UsageError

MAX_IDENTIFIER_BYTES = 63
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
_UNQUOTED_PART = re.compile(r"^[^\s\".]+$")


def _bad(text: str, why: str) -> UsageError:
    return UsageError(
        f"cannot read the table name {text!r}: {why}",
        hint="write it as schema.table, quoting names with capitals or spaces: 'public.\"Orders\"'",
    )


def _parts(text: str) -> list[str]:
    parts: list[str] = []
    i = 0
    while True:
        if i < len(text) and text[i] == '"':
            end, value = i + 1, []
            while True:
                if end >= len(text):
                    raise _bad(text, "a quote is not closed")
                if text[end] == '"':
                    if end + 1 < len(text) and text[end + 1] == '"':
                        value.append('"')
                        end += 2
                        continue
                    break
                value.append(text[end])
                end += 1
            part, i = "".join(value), end + 1
        else:
            end = text.find(".", i)
            end = len(text) if end < 0 else end
            raw = text[i:end]
            if not _UNQUOTED_PART.match(raw):
                raise _bad(text, "an empty part, a space or a quote in an unquoted name")
            part, i = raw.lower(), end
        if not part or len(part.encode()) > MAX_IDENTIFIER_BYTES or "\0" in part:
            raise _bad(text, f"each name has 1 to {MAX_IDENTIFIER_BYTES} bytes")
        parts.append(part)
        if i == len(text):
            return parts
        if text[i] != ".":
            raise _bad(text, "text after a closing quote")
        i += 1


def parse_table_name(text: str) -> tuple[str, str]:
    """(schema, table); the schema is `public` when not given."""
    parts = _parts(text.strip())
    if len(parts) > 2:
        raise _bad(text, "more than schema.table")
    return ("public", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def parse_identifier(text: str) -> str:
    """One name (a new table's), with the same folding and quoting rules."""
    parts = _parts(text.strip())
    if len(parts) != 1:
        raise _bad(text, "a table name without a schema is expected")
    return parts[0]


def quote_ident(name: str) -> str:
    """Quoted only when needed, for messages: orders, "Orders"."""
    return name if _PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def dump_pattern(schema: str, name: str) -> str:
    """A pg_dump --table pattern matching exactly this table (inside double quotes every
    character is literal, dots and wildcards included)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def truncate_identifier(name: str) -> str:
    """PostgreSQL truncates identifiers to 63 bytes; cut at a character boundary instead."""
    data = name.encode()[:MAX_IDENTIFIER_BYTES]
    return data.decode(errors="ignore")
