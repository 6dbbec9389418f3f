"""The `digest` command: one click group, each command a thin layer over the service code."""

from __future__ import annotations

from digest.cli import mail, ops, people, sources, web  # noqa: F401  (each module adds its commands to the group)
from digest.cli.app import App, cli

__all__ = ["App", "cli", "main"]


def main() -> None:
    cli(prog_name="digest")
