"""The config's building blocks: checked field types and the base of every section.

Shared by config.py and the sections kept in modules of their own (config_chat.py).
"""

# No `from __future__ import annotations`: see config.py.
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from aiconsole.config_problems import SECRET_TYPE, SLUG

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SSH_TARGET = re.compile(r"(?:[^@\s:/]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.-]*)(?::(?P<port>\d{1,5}))?")


# --- field types -------------------------------------------------------------------------


def _check_slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError("must be 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise PydanticCustomError(
            SECRET_TYPE, "must be the NAME of an environment variable (letters, digits, '_'), not its value"
        )
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:11434")
    if "@" in parts.netloc:
        raise PydanticCustomError(
            SECRET_TYPE, "must not carry credentials: name an environment variable in api_key_env"
        )
    try:
        parts.port  # reading it raises ValueError for a port outside 1-65535
    except ValueError:
        raise ValueError("has an invalid port (1-65535)") from None
    return value


def _check_ssh_target(value: str) -> str:
    if re.match(r"[^@]*:[^@]*@", value):
        raise PydanticCustomError(SECRET_TYPE, "must not carry a password: use an SSH key or agent")
    # A leading '-' would be read as an ssh option, so the pattern refuses it.
    match = _SSH_TARGET.fullmatch(value)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ValueError("must be user@host[:port] or a Host alias from ~/.ssh/config")
    return value


Slug = Annotated[str, AfterValidator(_check_slug)]
NonBlank = Annotated[str, AfterValidator(_check_not_blank)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
SshTarget = Annotated[str, AfterValidator(_check_ssh_target)]


class Section(BaseModel):
    # defer_build: the schema is built on first validation, so code that only needs the
    # types (imports for hints, `--help`) does not pay for it.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


def _check_model_name(value: str) -> str:
    from aiconsole.domain.models import model_name_problem

    if problem := model_name_problem(value):
        raise ValueError(f"is not a model name Ollama accepts: {problem}")
    return value


ModelName = Annotated[str, AfterValidator(_check_model_name)]
