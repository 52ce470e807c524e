"""Restore drills: realistic data to back up, timed recoveries, and the evidence they leave."""
