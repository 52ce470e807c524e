"""PostgreSQL: base backups, restores and their verification."""
