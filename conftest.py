"""Loads the drill plugin, the shared fixtures and every step library (see steps/__init__.py),
for `pytest` (tests/ and features/) as for `backup-engine drill`."""

from steps import PLUGINS

pytest_plugins = PLUGINS
