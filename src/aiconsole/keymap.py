"""Every rebindable key: its id, default keys and meaning, in one place.

The UI builds its `Binding`s from this table, `config check` validates the
`[keys]` section against it, and docs/keybindings.md lists it. No Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpec:
    id: str
    keys: str
    """Default key(s), comma-separated, in Textual's names (`question_mark`, `ctrl+p`)."""
    description: str
    where: str


KEY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("help", "question_mark", "Help: list every key", "everywhere"),
    KeySpec("quit", "q", "Quit", "everywhere"),
    KeySpec("command-palette", "colon", "Command palette (also ctrl+p)", "everywhere"),
    KeySpec("tab-fleet", "1", "Show the Fleet tab: VMs, cost, idle time", "everywhere"),
    KeySpec("tab-gpus", "2", "Show the GPUs tab: every GPU of the fleet", "everywhere"),
    KeySpec("tab-services", "3", "Show the Services tab: each service's health", "everywhere"),
    KeySpec("vm-start", "s", "Start the selected VM", "Fleet"),
    KeySpec("vm-stop", "x", "Stop the selected VM (asks first)", "Fleet"),
    KeySpec("fleet-refresh", "r", "Ask every provider for fresh state now", "Fleet"),
    KeySpec("vm-next", "down,j", "Select the next VM", "Fleet"),
    KeySpec("vm-previous", "up,k", "Select the previous VM", "Fleet"),
    KeySpec("confirm-yes", "y", "Confirm", "dialogs"),
    KeySpec("confirm-no", "n,escape", "Cancel", "dialogs"),
    KeySpec("help-close", "escape,question_mark,q", "Close help", "help"),
)

KEYS_BY_ID: dict[str, KeySpec] = {spec.id: spec for spec in KEY_SPECS}


def unknown_key_ids(keymap: dict[str, str]) -> list[str]:
    """Ids in a user's `[keys]` section that no binding has: most likely typos."""
    return sorted(set(keymap) - set(KEYS_BY_ID))
