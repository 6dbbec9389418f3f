"""`digest serve` as a real server process for the tests: started on a free port, waited for, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

# Generous: a busy 2-core CI machine may take a while to start Python, Flask and the migrations.
START_DEADLINE = 90.0


def write_config(path: Path, database_url: str, base_url: str, smtp_url: str, **extra: object) -> Path:
    lines = [
        f'database_url = "{database_url}"',
        f'base_url = "{base_url}"',
        f'smtp_url = "{smtp_url}"',
        'secret_key = "test-secret-0123456789abcdef"',
        'id_domain = "digest.test"',
        'timezone = "Europe/Paris"',
        f'feeds_dir = "{path.parent / "feeds"}"',
        *(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}" for key, value in extra.items()),
    ]
    path.write_text("\n".join(lines).replace("'", '"') + "\n", encoding="utf-8")
    return path


def environment(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return env | {"DIGEST_CONFIG": str(config)}


@contextmanager
def serving(config: Path, port: int) -> Iterator[str]:
    """Run `digest serve` on 127.0.0.1:port with this config until the block ends; yield its URL."""
    log = config.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--port", str(port)],
            env=environment(config),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_DEADLINE
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"digest serve exited {process.returncode}: {log.read_text()}")
                try:
                    if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"digest serve did not answer within {START_DEADLINE} s: {log.read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ingest(config: Path, *sources: str) -> None:
    """`digest ingest` of these sources into the store of ``config``, as a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "digest", "ingest", *sources],
        env=environment(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
