"""The `digest` command: one click group, each command a thin layer over the service code, imported when it is
invoked (digest.cli.app.COMMANDS)."""

from __future__ import annotations

import gc

from digest.cli.app import App, cli

__all__ = ["App", "cli", "main"]


def main() -> None:
    try:
        cli(prog_name="digest")
    finally:
        # On the way out, the interpreter's last collections would walk every object the run made and every module
        # it imported (SQLAlchemy's alone are many): 0.1 s of every command's end, for memory freed at exit anyway.
        # Frozen, they are left to the exit (CPython's gc.freeze; nothing of digest's waits on a finalizer).
        gc.freeze()
