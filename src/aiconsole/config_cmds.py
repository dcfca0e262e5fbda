"""`aiconsole init` and `aiconsole config check`: write a starter config, and validate one.

Exit codes, as cli.py returns them:

- 0: done (for `config check`, also when it printed warnings);
- 1: `init` refused because a file is already there, or could not write it. Nothing is wrong
  with any config, so this is not the usage/config error code;
- 2: `config check` found the config missing, unreadable or invalid (like argparse's usage
  errors: the operator has something to fix).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from aiconsole.config import ConfigError, SecretError, Settings, load_settings, resolve_secret
from aiconsole.config import secret_env_refs, write_starter_config

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_INVALID_CONFIG = 2


def run_init(path: Path, out: TextIO, err: TextIO) -> int:
    """Write the starter config at `path`, never over an existing file."""
    try:
        write_starter_config(path)
    except FileExistsError:
        print(
            f"{path} already exists; it was left unchanged.\n"
            "Check it with `aiconsole config check`, or pass --config NEW_PATH to write"
            " a fresh starter elsewhere.",
            file=err,
        )
        return EXIT_REFUSED
    except OSError as exc:
        # The failing path may be a parent folder: name it when it is not the file itself.
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        print(f"cannot write {path}: {exc.strerror or exc}{where}", file=err)
        return EXIT_REFUSED
    print(f"wrote a starter config to {path} (mode 0600)", file=out)
    print(
        "Next: replace the placeholder instance ids and addresses, export TENSORDOCK_API_KEY,"
        " then run `aiconsole config check`.",
        file=out,
    )
    return EXIT_OK


def run_config_check(
    path: Path, out: TextIO, err: TextIO, environ: Mapping[str, str] | None = None
) -> int:
    """Validate the config at `path`; warn (without failing) about secrets that cannot be read."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_INVALID_CONFIG
    for warning in _secret_warnings(settings, os.environ if environ is None else environ):
        print(f"warning: {warning}", file=err)
    vms = len(settings.vm)
    budget = settings.budget
    print(
        f"ok: {vms} VM{'' if vms == 1 else 's'}, budget ${budget.daily_usd:.2f}/day"
        f" ${budget.monthly_usd:.2f}/month ({path})",
        file=out,
    )
    return EXIT_OK


def _secret_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    # One warning per variable, however many VMs share it (both TensorDock VMs usually do).
    fields_by_env: dict[str, list[str]] = {}
    for field, env_name in secret_env_refs(settings):
        fields_by_env.setdefault(env_name, []).append(field)
    warnings = []
    for env_name, fields in fields_by_env.items():
        try:
            resolve_secret(env_name, environ)
        except SecretError as exc:
            warnings.append(f"{exc}; needed by {', '.join(fields)}")
    return warnings
