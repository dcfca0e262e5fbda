"""Textual `Binding`s built from the key table in `aiconsole.keymap`."""

from __future__ import annotations

from textual.binding import Binding

from aiconsole.keymap import KEYS_BY_ID


def binding(
    key_id: str, action: str, *, show: bool = True, label: str | None = None, group: Binding.Group | None = None
) -> Binding:
    """A Binding whose default keys and description come from the key table.

    `label` is the short footer text; the table's description is what help shows.
    Bindings of one `group` share one footer entry ("1 2 3 Tabs").
    """
    spec = KEYS_BY_ID[key_id]
    return Binding(
        spec.keys,
        action,
        label or spec.description,
        show=show,
        id=key_id,
        tooltip=spec.description,
        group=group,
    )
