"""Loads the drill plugin, the shared fixtures and every step library (see steps/__init__.py),
for `pytest` (tests/ and features/) as for `backup-engine drill`: by the name the drill loads
them by, `restore_drill_steps` when the project is installed (pip install -e .), so a drill run
from this checkout loads each step module once; a checkout that is only on the path (inside the
server images) has them as `steps`."""

import importlib
import importlib.util

_LIBRARY = "restore_drill_steps" if importlib.util.find_spec("restore_drill_steps") else "steps"
pytest_plugins = importlib.import_module(_LIBRARY).PLUGINS
