"""Redis: RDB snapshots taken over the network, restored into a data directory or a server."""
