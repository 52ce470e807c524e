"""What the root command passes to every subcommand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup_engine.config import Settings, load_settings
from backup_engine.progress import Progress, make_progress


@dataclass(frozen=True)
class CliContext:
    config: Path | None
    repo: str | None
    debug: bool
    stanza: str | None = None
    one_cluster: bool = False  # a pg command: with stanzas configured, one must be named

    def settings(self, **overrides: Any) -> Settings:
        loaded = load_settings(
            self.config, overrides={"repository.url": self.repo, **overrides}, stanza=self.stanza
        )
        if self.one_cluster:
            loaded.require_stanza()
        return loaded

    def settings_for(self, stanza: str) -> Settings:
        """The settings of one stanza of the configuration (run-all goes through them all)."""
        return load_settings(self.config, overrides={"repository.url": self.repo}, stanza=stanza)

    def progress(self, *, json_output: bool, enabled: bool = True) -> Progress:
        return make_progress(enabled=enabled and not json_output)
