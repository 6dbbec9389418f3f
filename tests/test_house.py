"""How digest is installed and started: a wheel renders mail from any folder; many processes may start at once on
a fresh database; import contracts hold."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import fixture_path

ROOT = Path(__file__).resolve().parents[1]


def _config(path: Path, database_url: str, **extra: str) -> Path:
    lines = [f'database_url = "{database_url}"', 'base_url = "https://digest.test"', 'id_domain = "digest.test"']
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_wheel_renders_and_sends_mail_from_an_empty_folder(tmp_path: Path) -> None:
    """pip install of the wheel (not editable) into a fresh venv; run from a folder with no templates/ near it."""
    source = tmp_path / "source"
    for name in ("src", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("digest-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The dependencies come from the test environment's site-packages, appended after the venv's own (the
    # editable digest there is not on that path: its .pth is not processed from an appended folder).
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    config = _config(empty / "digest.toml", f"sqlite:///{empty / 'digest.db'}", outbox_dir=str(empty / "outbox"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}

    def digest(*args: str, now: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(env_dir / "bin" / "digest"), *args],
            cwd=empty,
            env=env | {"DIGEST_NOW": now},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result

    where = subprocess.check_output(
        [python, "-c", "import digest.mail.build.render as r; print(r.default_templates())"],
        cwd=empty,
        env=env,
        text=True,
    ).strip()
    assert where.startswith(str(site)), where
    digest("ingest", fixture_path("listing-water.txt"), "--theme", "Water and Sanitation", now="2026-11-09T10:00:00Z")
    digest("subscribe", "ada@example.org", "--theme", "water-and-sanitation", "--confirmed", now="2026-11-10T10:00:00Z")
    digest(
        "ingest", fixture_path("listing-water-week2.txt"), "--theme", "Water and Sanitation", now="2026-11-12T10:00:00Z"
    )
    preview = digest("preview", "ada@example.org", "--html", now="2026-11-16T09:00:00Z")
    assert "<html" in preview.stdout.lower() and "unsubscribe" in preview.stdout.lower()
    sent = digest("send", now="2026-11-16T09:00:00Z")
    assert "1 sent" in sent.stdout
    assert len(list((empty / "outbox" / "new").iterdir())) == 1
    # The web app's pages and stylesheet are in the wheel too.
    pages = subprocess.run(
        [
            python,
            "-c",
            "from dataclasses import replace; from digest.config import load_settings; "
            "from digest.web import create_app; "
            "c = create_app(replace(load_settings(), environment='development')).test_client(); "
            "print(c.get('/').status_code, c.get('/static/style.css').status_code, "
            "c.get('/themes/water-and-sanitation').status_code)",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pages.stdout.split() == ["200", "200", "200"], pages.stderr
    # The translations, compiled into the wheel from the .po (the .mo are never committed).
    with zipfile.ZipFile(wheel) as built:
        assert {"digest/locales/fr/LC_MESSAGES/messages.mo", "digest/locales/es/LC_MESSAGES/messages.mo"} <= set(
            built.namelist()
        )
    spoken = subprocess.run(
        [python, "-c", "from digest.text import i18n; print(i18n.translations('es').gettext('Subscribe'))"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert spoken.stdout.strip() == "Suscribirse", spoken.stderr


def _start_at_once(database_url: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """Four digest commands started together on the same fresh database, as a deployment does."""
    config = _config(tmp_path / "digest.toml", database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}
    commands = [["themes", "--json"], ["subscribers", "list", "--json"], ["sources", "--json"], ["db", "upgrade"]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "digest", *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    results = []
    for proc, command in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def test_four_processes_start_at_once_on_a_fresh_postgresql_database(pg_url: str, tmp_path: Path) -> None:
    for result in _start_at_once(pg_url, tmp_path):
        assert result.returncode == 0 and "Traceback" not in result.stderr, (result.args, result.stderr)


def test_four_processes_start_at_once_on_a_fresh_sqlite_database(tmp_path: Path) -> None:
    for result in _start_at_once(f"sqlite:///{tmp_path / 'var' / 'digest.db'}", tmp_path):
        assert result.returncode == 0 and "Traceback" not in result.stderr, (result.args, result.stderr)


@pytest.mark.skipif(
    shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
    reason="import-linter is not installed in this environment",
)
def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_send_imports_only_what_sending_needs(tmp_path: Path) -> None:
    """Each command is a process, and every message of a send waits for its start-up: `digest send` (planning,
    sending, over SMTP, no DKIM key, the schema current) must not import the ingest stack, the feed writer, the
    bounce reader's parsers, DKIM or alembic."""
    config = _config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        smtp_url="smtp://127.0.0.1:9",
        secret_key="house-test-secret-0123456789abcdef",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "digest", "send"], env=env, check=True, capture_output=True)  # upgrades
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['digest', 'send', '--json']\n"
        "try:\n    runpy.run_module('digest', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = ['alembic', 'digest.ingest', 'digest.feeds.atom', 'feedgen', 'httpx', 'feedparser', 'dkim',\n"
        "         'email.policy', 'flask']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and '"sent": 0' in done.stdout, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "", done.stdout.splitlines()[-1]  # none of them


def _state_literals() -> list[str]:
    """Comparisons of a state or choice (status, frequency, kind, outcome) with a word typed out as a string."""
    import ast
    from enum import StrEnum

    from digest.store import states

    words = {m.value for e in vars(states).values() if isinstance(e, type) and issubclass(e, StrEnum) for m in e}
    words.discard("ok")  # also an HTTP word; JobOutcome.OK compared by name is checked through "outcome" below
    fields = {"status", "frequency", "freq", "kind", "outcome"}

    def named(node: ast.AST) -> str:
        return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""

    def literal(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in words
        return isinstance(node, ast.Tuple | ast.Set | ast.List) and any(literal(e) for e in node.elts)

    found = []
    for path in sorted((ROOT / "src" / "digest").rglob("*.py")):
        if path.name == "states.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(named(side) in fields for side in sides) and any(literal(side) for side in sides):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_state_is_typed_out_outside_the_states_module() -> None:
    """States and choices are enums (digest.store.states), in the columns (EnumText) and in every comparison."""
    assert _state_literals() == []


# The map --------------------------------------------------------------------------------------------------------

SOURCE = ROOT / "src" / "digest"


def _modules() -> list[Path]:
    """Every module of the package, but the migrations' (they are history, not the house) and __init__/__main__."""
    return sorted(
        p.relative_to(SOURCE)
        for p in SOURCE.rglob("*.py")
        if "migrations" not in p.parts and p.name not in ("__init__.py", "__main__.py")
    )


def test_every_module_is_on_a_map() -> None:
    """The README's Layout or docs/architecture.md names every module (as `folder/module` or, at the top, `module`),
    and every folder of the package: a module added without a word about it fails here."""
    maps = (ROOT / "README.md").read_text(encoding="utf-8") + (ROOT / "docs" / "architecture.md").read_text(
        encoding="utf-8"
    )
    missing = []
    for module in _modules():
        name = module.with_suffix("").as_posix()
        if name not in maps and f"{name}.py" not in maps:
            missing.append(name)
    folders = {p.parent.as_posix() for p in _modules()} | {"locales"}
    missing += [f"{folder}/" for folder in sorted(folders) if folder != "." and f"{folder}/" not in maps]
    assert not missing, f"on neither map (README's Layout, docs/architecture.md): {missing}"


def test_no_folder_is_a_crowd_and_no_siblings_are_named_alike() -> None:
    """A folder holds one concern (at most 12 modules), and two siblings never differ by a suffix only
    (plan/planning, message/messages: a reader cannot tell which does what)."""
    by_folder: dict[Path, list[str]] = {}
    for module in _modules():
        by_folder.setdefault(module.parent, []).append(module.stem)
    crowded = {str(folder): len(names) for folder, names in by_folder.items() if len(names) > 12}
    assert not crowded, crowded
    alike = [
        (str(folder), a, b)
        for folder, names in by_folder.items()
        for a in names
        for b in names
        if a < b and (b.startswith(a) or a.startswith(b))
    ]
    assert not alike, alike


def test_transactions_are_opened_only_by_the_store() -> None:
    """One way into a write transaction, store.db.transaction: nobody else calls .begin(), .commit() or
    Session(...), but the store itself and the worker's lease (a single guarded statement)."""
    import re

    allowed = {Path("worker/lease.py")}
    found = []
    for module in _modules():
        if module.parts[0] == "store" or module in allowed:
            continue
        for n, line in enumerate((SOURCE / module).read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.begin\(\)|\.commit\(\)|\bSession\(", line) and not line.lstrip().startswith("#"):
                found.append(f"{module}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
