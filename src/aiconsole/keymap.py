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
    changes: bool = False
    """It changes something (power, models): hidden and refused in read-only mode."""


KEY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("help", "question_mark,f1", "Help: list every key (f1 also while typing)", "everywhere"),
    KeySpec("quit", "q", "Quit", "everywhere"),
    KeySpec("command-palette", "colon", "Command palette (also ctrl+p)", "everywhere"),
    KeySpec("tab-fleet", "1", "Show the Fleet tab: VMs, cost, idle time", "everywhere"),
    KeySpec("tab-gpus", "2", "Show the GPUs tab: every GPU of the fleet", "everywhere"),
    KeySpec("tab-services", "3", "Show the Services tab: each service's health", "everywhere"),
    KeySpec("tab-models", "4", "Show the Models tab: each VM's Ollama models", "everywhere"),
    KeySpec("tab-chat", "5", "Show the Chat tab: talk to a model on a VM", "everywhere"),
    KeySpec("tab-training", "6", "Show the Training tab: MLflow runs and their metrics", "everywhere"),
    KeySpec("tab-events", "7", "Show the Events tab: every start and stop, and why", "everywhere"),
    KeySpec("idle-snooze", "z", "Put the warned (else the selected) VM's idle stop off 30 minutes", "everywhere", changes=True),
    KeySpec("vm-start", "s", "Start the selected VM", "Fleet", changes=True),
    KeySpec("vm-stop", "x", "Stop the selected VM (asks; twice with an MLflow run going)", "Fleet", changes=True),
    KeySpec("fleet-refresh", "r", "Ask every provider for fresh state now", "Fleet"),
    KeySpec("vm-next", "down,j", "Select the next VM", "Fleet"),
    KeySpec("vm-previous", "up,k", "Select the previous VM", "Fleet"),
    KeySpec("model-pull", "p", "Pull a model onto the selected VM; retry a failed pull", "Models", changes=True),
    KeySpec("model-cancel", "c", "Cancel the selected pull, or dismiss a finished one", "Models", changes=True),
    KeySpec("pull-escape", "escape", "On a pull's row: cancel it, or dismiss it when finished", "Models", changes=True),
    KeySpec("model-delete", "d", "Delete the selected model (asks first)", "Models", changes=True),
    KeySpec("model-unload", "u", "Unload the selected model from memory", "Models", changes=True),
    KeySpec("model-details", "enter", "Show the selected model's details", "Models"),
    KeySpec("models-refresh", "r", "Read every model server again now", "Models"),
    KeySpec("model-next", "down,j", "Select the next row", "Models"),
    KeySpec("model-previous", "up,k", "Select the previous row", "Models"),
    KeySpec("chat-send", "enter", "Send the message (starting a stopped VM asks first)", "Chat prompt"),
    KeySpec("chat-newline", "ctrl+j", "A new line in the message (pasted text keeps its own)", "Chat prompt"),
    KeySpec("chat-stop", "escape", "Stop the reply (the partial reply is kept); idle: leave the prompt", "Chat"),
    KeySpec("chat-new", "ctrl+n", "New chat", "Chat"),
    KeySpec("chat-setup", "ctrl+t", "Choose the VM, the model (or auto) and the persona", "Chat"),
    KeySpec("chat-history", "ctrl+o", "Saved chats: resume, delete, export to Markdown", "Chat"),
    KeySpec("chat-copy-reply", "ctrl+r", "Copy the last reply to the clipboard (OSC 52)", "Chat"),
    KeySpec("chat-copy-code", "ctrl+b", "Copy the last reply's last code block (OSC 52)", "Chat"),
    KeySpec("chat-prompt", "i", "Back to the prompt", "Chat"),
    KeySpec("run-next", "down,j", "Select the next run", "Training"),
    KeySpec("run-previous", "up,k", "Select the previous run", "Training"),
    KeySpec("run-compare", "c", "Pin the selected run to compare others with it (again: unpin)", "Training"),
    KeySpec("metric-next", "m", "Chart the next metric", "Training"),
    KeySpec("metric-previous", "n", "Chart the previous metric", "Training"),
    KeySpec("chart-log", "l", "Log scale on/off for the chart", "Training"),
    KeySpec("chart-x-axis", "t", "Chart against steps or against time since the run started", "Training"),
    KeySpec("run-params", "p", "Show the run's params and tags, or its chart", "Training"),
    KeySpec("runs-status", "f", "Filter runs by status: all, RUNNING, FINISHED, FAILED, KILLED", "Training"),
    KeySpec("runs-filter", "slash", "Filter runs by name (esc clears)", "Training"),
    KeySpec("runs-refresh", "r", "Read every MLflow server again now", "Training"),
    KeySpec("event-next", "down,j", "Select the next event", "Events"),
    KeySpec("event-previous", "up,k", "Select the previous event", "Events"),
    KeySpec("events-vm", "v", "Show the events of one VM: all, then each VM in turn", "Events"),
    KeySpec("events-refresh", "r", "Read the event journal again now", "Events"),
    KeySpec("history-resume", "enter", "Resume the selected chat", "saved chats"),
    KeySpec("history-delete", "d", "Delete the selected chat (asks first)", "saved chats"),
    KeySpec("history-export", "e", "Export the selected chat to Markdown (current folder)", "saved chats"),
    KeySpec("confirm-yes", "y", "Confirm", "dialogs"),
    KeySpec("confirm-no", "n,escape", "Cancel", "dialogs"),
    KeySpec("dialog-close", "escape", "Close the dialog", "pull and details dialogs"),
    KeySpec("help-close", "escape,question_mark,q", "Close help", "help"),
)

KEYS_BY_ID: dict[str, KeySpec] = {spec.id: spec for spec in KEY_SPECS}


def unknown_key_ids(keymap: dict[str, str]) -> list[str]:
    """Ids in a user's `[keys]` section that no binding has: most likely typos."""
    return sorted(set(keymap) - set(KEYS_BY_ID))
