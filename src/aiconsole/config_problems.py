"""Config problems in the operator's terms: TOML field paths, values as written, plain reasons.

pydantic reports locations as tuples and messages in its own words; this turns them into
``vm[0] (inference).hourly_usd = -1.5: Input should be greater than or equal to 0``, hides
values that could be secrets, and suggests the closest key for a typo.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any, get_args

from pydantic import BaseModel

from aiconsole.config_file import ConfigProblem

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""What a VM or service name may be; here because paths name VMs by it."""
_SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|token|password|passwd|secret)(?:_|$)", re.IGNORECASE)
_NOT_SECRET_KEYS = frozenset({"token_id"})  # a Proxmox token id ("user@realm!name") is public
SECRET_TYPE = "secret_in_config"
"""Error type of validators whose input must never be echoed."""


def _secret_key_locs(node: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Keys that look like they hold a secret; free-form tables (keys, states) are skipped."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _secret_key_locs(item, (*loc, index))
        return
    if not isinstance(node, dict) or loc == ("keys",) or (loc and loc[-1] == "states"):
        return
    for key, value in node.items():
        if _SECRET_KEY.search(key) and not key.endswith("_env") and key not in _NOT_SECRET_KEYS:
            yield (*loc, key)
        else:
            yield from _secret_key_locs(value, (*loc, key))


def secret_key_problems(data: dict[str, Any]) -> list[ConfigProblem]:
    """Keys that look like secrets, reported without their values."""
    return [ConfigProblem(field_path(loc, data), None, _secret_key_reason(loc), loc) for loc in _secret_key_locs(data)]


def _secret_key_reason(loc: tuple[Any, ...]) -> str:
    return (
        "looks like a secret, and secrets are not read from the config file: put it in an"
        f" environment variable and give that variable's name in a *_env field (e.g. {loc[-1]}_env)"
    )


def validation_problem(err: Mapping[str, Any], data: dict[str, Any], root: type[BaseModel]) -> ConfigProblem:
    """One pydantic error in TOML terms: field path, the value as written, a plain reason."""
    loc = tuple(err["loc"])
    reason = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
    field = field_path(loc, data)
    if err["type"] == "extra_forbidden":
        reason = "unknown key" + _suggestion(loc, root)
    elif err["type"] == "list_type" and isinstance(err.get("input"), dict):
        table = ".".join(part for part in loc if isinstance(part, str))
        reason = f"write each entry as [[{table}]], with double brackets"
    return ConfigProblem(field, _shown_value(err, loc), reason, loc)


def _shown_value(err: Mapping[str, Any], loc: tuple[Any, ...]) -> str | None:
    value = err.get("input")
    hidden = err["type"] in (SECRET_TYPE, "missing") or (loc and str(loc[-1]).endswith("_env"))
    # TOML has no null, so a None input is a key that was left out.
    if hidden or value is None or isinstance(value, (dict, list, BaseModel)):
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)  # as written in TOML
    return text if len(text) <= 60 else text[:57] + "..."


def field_path(loc: tuple[Any, ...], data: Any) -> str:
    path, node = "", data
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str) and SLUG.fullmatch(name):
                path += f" ({name})"
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else repr(part)
            path += f".{key}" if path else key
            node = node.get(part) if isinstance(node, dict) else None
    return path


def _suggestion(loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if isinstance(part, str):
            model = _section_model(model, part)
    if model is None:
        return ""
    import difflib  # deferred: only an unknown key pays for it

    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(model.model_fields)}"


def _section_model(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The model of a nested section (``vm`` -> VmConfig), read off the field's annotation."""
    field = model.model_fields.get(key) if model is not None else None
    if field is None:
        return None
    pending = [field.annotation]
    while pending:  # unwrap Optional[...] and list[...]
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        pending += [arg for arg in get_args(annotation) if arg is not type(None)]
    return None
