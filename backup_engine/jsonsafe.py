"""JSON read from the repository is untrusted input: anyone who can write to the bucket may have
written it. Too big, nested deeper than any record this tool writes, not text, not JSON, or not
the shape asked for is one CorruptObject naming where it came from, never a crash (a
RecursionError from a document of 100,000 `[` stopped every catalog command before)."""

from __future__ import annotations

import json
from typing import Any

from backup_engine.errors import CorruptObject

MAX_BYTES = 64 << 20  # far above any manifest, pin, lock or index header this tool writes


def loads(data: bytes | str, *, where: str, limit: int = MAX_BYTES) -> Any:
    if len(data) > limit:
        raise CorruptObject(f"{where} is {len(data)} bytes: more than any record of its kind")
    try:
        return json.loads(data)
    except RecursionError:
        raise CorruptObject(f"{where} is nested deeper than any record this tool writes") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptObject(f"{where} is not JSON: {str(exc)[:120]}") from None


def loads_object(data: bytes | str, *, where: str, limit: int = MAX_BYTES) -> dict[str, Any]:
    value = loads(data, where=where, limit=limit)
    if not isinstance(value, dict):
        raise CorruptObject(f"{where} is not a JSON object but {type(value).__name__}")
    return value
