"""Secrets: read from the environment (or a 0600 file it names), never from the config.

The config only names variables (`*_env` fields); the value is read at the point of
use and held in a `Secret`, whose repr is masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiconsole.config_file import SecretError
from aiconsole.domain.secret import Secret

if TYPE_CHECKING:
    from aiconsole.config import Settings


def resolve_secret(env_name: str, environ: Mapping[str, str]) -> Secret:
    """The secret in ``$NAME``, else in the 0600 file named by ``$NAME_FILE``; raises `SecretError`."""
    if value := environ.get(env_name, "").strip():
        return Secret(value)
    file_name = environ.get(f"{env_name}_FILE", "").strip()
    if not file_name:
        raise SecretError(
            f"environment variable {env_name} is not set or empty"
            f" (set it, or set {env_name}_FILE to a file with mode 0600 holding the secret)",
            env_name=env_name,
        )
    return Secret(_read_private_file(Path(file_name), env_name))


def _read_private_file(path: Path, env_name: str) -> str:
    where = f"{path} (named by {env_name}_FILE)"
    try:
        with open(path, encoding="utf-8") as handle:
            # fstat on the open file, so the checked file is the one read.
            mode = os.fstat(handle.fileno()).st_mode
            if os.name == "posix" and mode & 0o077:
                raise SecretError(
                    f"{where} is readable or writable by group or others (mode {mode & 0o777:04o});"
                    f" run `chmod 600 {path}`",
                    env_name=env_name,
                )
            value = handle.read().strip()
    except OSError as exc:
        raise SecretError(f"cannot read {where}: {exc.strerror or exc}", env_name=env_name) from None
    except UnicodeDecodeError:
        raise SecretError(f"{where} is not UTF-8 text", env_name=env_name) from None
    if not value:
        raise SecretError(f"{where} is empty", env_name=env_name)
    return value


def secret_env_refs(settings: Settings) -> list[tuple[str, str]]:
    """(field path, variable name) for every environment variable the config relies on."""
    refs: list[tuple[str, str]] = []
    for index, vm in enumerate(settings.vm):
        at = f"vm[{index}] ({vm.name})"
        if vm.tensordock is not None:
            refs.append((f"{at}.tensordock.api_key_env", vm.tensordock.api_key_env))
        if vm.proxmox is not None:
            if vm.proxmox.token_id is None:
                refs.append((f"{at}.proxmox.token_id_env", vm.proxmox.token_id_env))
            refs.append((f"{at}.proxmox.token_secret_env", vm.proxmox.token_secret_env))
        refs += [
            (f"{at}.service[{i}] ({s.name}).api_key_env", s.api_key_env)
            for i, s in enumerate(vm.service)
            if s.api_key_env is not None
        ]
    return refs
