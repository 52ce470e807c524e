"""Command groups of the CLI; each builds on the engine and prints, nothing more."""
