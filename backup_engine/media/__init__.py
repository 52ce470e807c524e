"""Media files (user uploads): content-addressed, incremental snapshots of a directory tree."""
