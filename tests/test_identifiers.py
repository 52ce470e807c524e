"""Table names as operators type them: folded, quoted, and never a pattern or SQL injection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_engine.errors import UsageError
from backup_engine.postgres.identifiers import (
    dump_pattern,
    parse_identifier,
    parse_table_name,
    qualified,
    quote_ident,
    truncate_identifier,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", ("public", "orders")),
        ("Orders", ("public", "orders")),  # unquoted folds, as in SQL
        ('"Orders"', ("public", "Orders")),
        ("app.orders", ("app", "orders")),
        ('public."Order Items.v2"', ("public", "Order Items.v2")),
        ('"my.schema"."a""b"', ("my.schema", 'a"b')),
        ("  spaced.out  ", ("spaced", "out")),
    ],
)
def test_names_are_read_as_sql_reads_them(text: str, expected: tuple[str, str]) -> None:
    assert parse_table_name(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ".", "a.", ".a", "a.b.c", '"open', '"a"b', "has space", '"' + "x" * 64 + '"', '""'],
)
def test_bad_names_are_one_clear_refusal(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read the table name"):
        parse_table_name(text)


names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), min_size=1)


@given(schema=names, table=names)
def test_qualified_names_read_back_as_themselves(schema: str, table: str) -> None:
    schema, table = truncate_identifier(schema), truncate_identifier(table)
    if not schema or not table:
        return
    assert parse_table_name(qualified(schema, table)) == (schema, table)
    assert parse_identifier(quote_ident(table)) == table
    # In pg_dump's pattern language everything inside double quotes is literal.
    pattern = dump_pattern(schema, table)
    assert pattern.startswith('"') and pattern.endswith('"')
    assert parse_table_name(pattern) == (schema, table)


def test_truncation_keeps_whole_characters() -> None:
    assert truncate_identifier("é" * 40) == "é" * 31  # 62 bytes: the 32nd would make 64
