"""Restore-testing plans for a fleet: many targets (each a configuration and its repository),
each drilled on a schedule with a recovery point chosen per plan, results collected in one
signed report. `plan.py` reads a plan, `pool.py` runs it on this machine, `report.py` says what
came of it."""
