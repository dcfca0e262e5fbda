"""The Textual application: header, the Fleet tab, footer, help and the palette."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, ComposeResult, SystemCommand
from textual.screen import Screen
from textual.widgets import Footer, Header

from aiconsole.keymap import unknown_key_ids
from aiconsole.ui.bindings import binding
from aiconsole.ui.fleet_pane import FleetPane
from aiconsole.ui.help import HelpScreen, KeyRow
from aiconsole.ui.themes import DEFAULT_THEME, bundled_theme_dirs, load_themes

if TYPE_CHECKING:
    from aiconsole.services.fleet import FleetMonitor


class AiConsoleApp(App[None]):
    TITLE = "aiconsole"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        binding("help", "help", label="Help"),
        binding("quit", "quit", label="Quit"),
        binding("command-palette", "command_palette", show=False),
    ]

    def __init__(
        self,
        monitor: FleetMonitor,
        *,
        read_only: bool = False,
        theme_name: str | None = None,
        theme_dirs: Sequence[Path] = (),
        keymap: dict[str, str] | None = None,
        subtitle: str = "",
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.read_only = read_only
        self.sub_title = " · ".join(part for part in (subtitle, "read-only" if read_only else "") if part)
        self._startup_warnings: list[str] = []
        self._install_themes(theme_name or DEFAULT_THEME, [*bundled_theme_dirs(), *theme_dirs])
        self._install_keymap(keymap or {})

    def _install_themes(self, wanted: str, dirs: list[Path]) -> None:
        themes, problems = load_themes(dirs)
        for theme in themes:
            self.register_theme(theme)
        self._startup_warnings += [str(problem) for problem in problems]
        if wanted not in self.available_themes:
            self._startup_warnings.append(f"theme {wanted!r} not found; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted

    def _install_keymap(self, keymap: dict[str, str]) -> None:
        unknown = unknown_key_ids(keymap)
        if unknown:
            self._startup_warnings.append(f"[keys]: no binding has the id(s) {', '.join(unknown)}")
        self.set_keymap({key_id: keys for key_id, keys in keymap.items() if key_id not in unknown})

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield FleetPane(self.monitor, read_only=self.read_only, id="fleet")
        yield Footer()

    def on_mount(self) -> None:
        for warning in self._startup_warnings:
            self.notify(warning, severity="warning", timeout=10, markup=False)

    async def on_unmount(self) -> None:
        await self.monitor.close()

    @property
    def fleet(self) -> FleetPane:
        return self.query_one(FleetPane)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        footnote = "Keys can be rebound in the [keys] section of the config (see docs/keybindings.md)."
        self.push_screen(HelpScreen(self._key_rows(), footnote))

    def _key_rows(self) -> list[KeyRow]:
        rows: list[KeyRow] = []
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            description = active.binding.tooltip or active.binding.description
            if not description or (active.binding.id or key) in seen:
                continue
            seen.add(active.binding.id or key)
            keys = self.get_key_display(active.binding)
            rows.append((keys, description + ("" if active.enabled else " (not available here)")))
        rows.append(("ctrl+p", "Command palette"))
        return rows

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "List every key", self.action_help)
        yield SystemCommand("Refresh fleet", "Ask every provider for fresh state", self.fleet.action_refresh)
        if self.read_only:
            return
        for vm in self.monitor.snapshot().vms:
            if not vm.can_power:
                continue
            yield SystemCommand(f"Start VM {vm.name}", f"{vm.provider}", partial(self.fleet.action_start, vm.name))
            yield SystemCommand(f"Stop VM {vm.name}", "asks first", partial(self.fleet.action_stop, vm.name))
