"""The `digest` command: one click group, each command a thin layer over the service code, imported when it is
invoked (digest.cli.app.COMMANDS)."""

from __future__ import annotations

from digest.cli.app import App, cli

__all__ = ["App", "cli", "main"]


def main() -> None:
    cli(prog_name="digest")
