"""The layers in DESIGN.md hold: the core never imports Textual (or the UI)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import aiconsole

CORE_PACKAGES = ("aiconsole.domain", "aiconsole.services", "aiconsole.demo")
CORE_MODULES = (
    "aiconsole.config",
    "aiconsole.config_file",
    "aiconsole.config_secrets",
    "aiconsole.config_problems",
    "aiconsole.config_fields",
    "aiconsole.config_chat",
    "aiconsole.config_training",
    "aiconsole.config_cmds",
    "aiconsole.starter_config",
    "aiconsole.paths",
    "aiconsole.keymap",
    "aiconsole.assembly",
    "aiconsole.runtime",
    "aiconsole.commands",
    "aiconsole.commands_chat",
    "aiconsole.commands_models",
    "aiconsole.commands_telemetry",
    "aiconsole.commands_training",
    "aiconsole.commands_runs",
    "aiconsole.commands_events",
    "aiconsole.commands_guard",
    "aiconsole.commands_orphans",
    "aiconsole.commands_watch",
    "aiconsole.config_guard",
    "aiconsole.cli",
)


def _core_modules() -> list[str]:
    names = list(CORE_MODULES)
    for package in CORE_PACKAGES:
        module = __import__(package, fromlist=["__path__"])
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return names


def fresh_interpreter(script: str) -> str:
    """What `script` prints in a new Python process (nothing imported before it)."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_core_modules_do_not_import_textual_in_a_fresh_interpreter() -> None:
    modules = _core_modules()
    assert "aiconsole.services.fleet" in modules and "aiconsole.domain.cost" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'aiconsole.ui')))\n"
        "print('\\n'.join(bad))\n"
    )
    imported = fresh_interpreter(script)
    assert imported == "", f"core imported: {imported}"


def test_domain_does_not_do_io() -> None:
    """Domain modules import no I/O or clock-reading libraries."""
    import ast
    from pathlib import Path

    forbidden = {"sqlite3", "httpx", "asyncssh", "socket", "subprocess", "asyncio", "ollama", "os"}
    domain_dir = Path(aiconsole.__file__).parent / "domain"
    for path in domain_dir.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not forbidden.intersection(names), f"{path.name} imports {names}"


def test_cli_import_is_cheap() -> None:
    """`aiconsole` parses its arguments before anything heavy is imported."""
    script = (
        "import sys, aiconsole.cli, aiconsole.runtime\n"
        "heavy = ('pydantic', 'httpx', 'asyncssh', 'ollama', 'textual', 'sqlite3')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    assert fresh_interpreter(script) == ""


def test_the_demo_fleet_is_built_without_asyncssh() -> None:
    """`--demo` writes its config (SSH ports reserved) before the panes paint: asyncssh comes later."""
    script = (
        "import sys, tempfile, pathlib\n"
        "from aiconsole.demo.fleet import DemoFleet\n"
        "fleet = DemoFleet(pathlib.Path(tempfile.mkdtemp()))\n"
        "assert 'ssh = \"aiconsole@127.0.0.1:' in fleet.config_text\n"
        "print('asyncssh' in sys.modules)\n"
    )
    assert fresh_interpreter(script) == "False"
