"""Settings: the operator's TOML file, validated into frozen pydantic models.

Each error names the file, the field in TOML terms (``vm[0] (inference).hourly_usd``), the bad
value and the reason, and every error is reported at once. Secrets never live in the file:
``*_env`` fields name environment variables and `resolve_secret` reads them at the point of use.
Models are strict (TOML has real types, so ``via_ssh = "yes"`` is a mistake, not a ``True``) and
forbid unknown keys, so a typo is an error with a suggestion rather than a silently ignored line.
"""

# No `from __future__ import annotations` here: pydantic would then evaluate every field's
# annotation string through typing.ForwardRef, which compile()s each one at import.
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aiconsole.config_chat import ChatConfig
from aiconsole.config_guard import GuardConfig
from aiconsole.config_training import TrainingConfig
from aiconsole.config_fields import EnvName, HttpUrl, ModelName, NonBlank, Section, Slug, SshTarget
from aiconsole.config_file import (
    ConfigError,
    ConfigProblem,
    SecretError,
    parse_config_text,
    read_config_data,
)
from aiconsole.config_problems import SECRET_TYPE, secret_key_problems, validation_problem
from aiconsole.config_secrets import (  # re-exported: part of the config API
    resolve_secret,
    secret_env_refs,
)
from aiconsole.domain.model_server import MODEL_SERVER_KINDS
from aiconsole.domain.power import PowerState
from aiconsole.keymap import unknown_key_ids
from aiconsole.starter_config import STARTER_CONFIG, write_starter_config

__all__ = [
    "STARTER_CONFIG", "BudgetConfig", "ChatConfig", "CommandConfig", "ConfigError", "ConfigProblem",
    "ProxmoxConfig", "SecretError", "ServiceConfig", "Settings", "TensorDockConfig", "TrainingConfig", "UiConfig",
    "VmConfig", "load_settings", "resolve_secret", "secret_env_refs", "settings_from_data",
    "settings_from_toml_text",
    "write_starter_config",
]

_PROXMOX_TOKEN_ID = re.compile(r"[^@\s!]+@[^@\s!]+![^@\s!]+")


# --- sections ----------------------------------------------------------------------------


class BudgetConfig(Section):
    daily_usd: float = Field(default=5.0, gt=0)
    """Spend allowed per day; at 100 % running VMs are stopped."""
    monthly_usd: float = Field(default=50.0, gt=0)
    """Spend allowed per calendar month."""
    warn_at: float = Field(default=0.5, gt=0, le=1)
    """Share of a budget (0-1] at which the console warns."""
    alert_at: float = Field(default=0.8, gt=0, le=1)
    """Share of a budget (0-1] at which the console raises an alert."""
    vm_daily_warn_usd: float = Field(default=5.0, ge=0)
    """One VM costing more than this in a day is a warning."""
    vm_daily_critical_usd: float = Field(default=10.0, ge=0)
    """One VM costing more than this in a day is critical."""
    timezone: str | None = None
    """IANA zone (``Europe/Paris``) in which days and months start; None: this machine's zone."""
    grace_minutes: float = Field(default=10.0, ge=0, le=24 * 60)
    """At 100 % of a budget, a VM with a RUNNING MLflow run keeps running this long, with a loud
    alert, before it is stopped too (0: at once). Bounds the overshoot."""
    snooze_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    """How long the snooze key (z) puts an idle stop off."""
    enforce_step_s: float = Field(default=5.0, ge=1, le=300)
    """Seconds between two looks of the money guard (idle and budget stops) at the fleet."""
    orphan_scan_minutes: float = Field(default=5.0, ge=0)
    """Minutes between orphan scans (TensorDock and Proxmox instances the config does not know,
    reported with their $/h); one scan always runs at start. 0: only that one."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import zoneinfo  # deferred: only a config that names a zone pays for it

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("is not a known IANA time zone, e.g. 'Europe/Paris' or 'UTC'") from None
        return value

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> Self:
        if self.warn_at > self.alert_at:
            raise ValueError(f"warn_at ({self.warn_at}) must not be above alert_at ({self.alert_at})")
        if self.vm_daily_warn_usd > self.vm_daily_critical_usd:
            raise ValueError(
                f"vm_daily_warn_usd ({self.vm_daily_warn_usd}) must not be above"
                f" vm_daily_critical_usd ({self.vm_daily_critical_usd})"
            )
        return self


class GpuConfig(Section):
    interval_s: float = Field(default=1.0, ge=0.2, le=60)
    """Seconds between GPU samples (nvidia-smi over SSH, NVML locally)."""
    processes_interval_s: float = Field(default=10.0, ge=1, le=600)
    """How often to check whether per-process GPU memory needs reading again: it is read when
    a GPU's used memory moved by 256 MiB since the last reading, and at least every six of
    these intervals (each reading costs a command on the VM)."""
    temp_warn_c: float = Field(default=75.0, gt=0)
    """GPU temperature (°C) that is a warning."""
    temp_critical_c: float = Field(default=85.0, gt=0)
    """GPU temperature (°C) that is critical."""
    mem_warn_pct: float = Field(default=80.0, gt=0, le=100)
    """VRAM use (% of total) that is a warning."""
    mem_critical_pct: float = Field(default=95.0, gt=0, le=100)
    """VRAM use (% of total) that is critical."""
    busy_util_pct: float = Field(default=10.0, ge=0, le=100)
    """GPU utilisation above which the VM counts as busy for its idle timer."""
    local: bool = True
    """Also show the GPUs of the machine the console runs on (through NVML)."""

    @model_validator(mode="after")
    def _ordered_levels(self) -> Self:
        if self.temp_warn_c > self.temp_critical_c:
            raise ValueError(f"temp_warn_c ({self.temp_warn_c}) must not be above temp_critical_c ({self.temp_critical_c})")
        if self.mem_warn_pct > self.mem_critical_pct:
            raise ValueError(
                f"mem_warn_pct ({self.mem_warn_pct}) must not be above mem_critical_pct ({self.mem_critical_pct})"
            )
        return self


class SshConfig(Section):
    known_hosts: str | None = None
    """known_hosts file that host keys are checked against; None: ``~/.ssh/known_hosts``."""
    config_file: str | None = None
    """OpenSSH client config read for aliases, users, ports and identities; None: ``~/.ssh/config``."""
    max_handshakes: int = Field(default=8, ge=1, le=64)
    """At most this many SSH handshakes at once across the fleet."""
    keepalive_s: float = Field(default=15.0, ge=1, le=600)
    """Seconds between keepalives; a connection that misses three is dropped and reopened."""
    connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """Seconds a connection attempt may take before it counts as failed."""


class TensorDockConfig(Section):
    instance_id: NonBlank
    """The instance's id, from the TensorDock dashboard."""
    api_key_env: EnvName = "TENSORDOCK_API_KEY"
    """Environment variable holding the API token (or ``<NAME>_FILE``: a 0600 file holding it)."""
    api_url: HttpUrl = "https://dashboard.tensordock.com/api/v2"
    """Base URL of the TensorDock API; override it for a proxy or a test server."""


class ProxmoxConfig(Section):
    api_url: HttpUrl
    """Base URL of the Proxmox VE API, e.g. ``https://pve.lan:8006/api2/json``."""
    node: NonBlank
    """The cluster node the guest lives on, e.g. ``pve``."""
    vmid: int = Field(ge=100, le=999_999_999)
    """The guest's numeric id."""
    guest: Literal["qemu", "lxc"] = "qemu"
    """``qemu`` for a VM, ``lxc`` for a container."""
    token_id: str | None = None
    """The API token id, ``user@realm!name``. It is not secret, so it may be written here;
    when left out it is read from the variable named by `token_id_env`."""
    token_id_env: EnvName = "PROXMOX_TOKEN_ID"
    """Environment variable holding the token id, used only when `token_id` is not set."""
    token_secret_env: EnvName = "PROXMOX_TOKEN_SECRET"
    """Environment variable holding the token secret (or ``<NAME>_FILE``: a 0600 file)."""
    verify_tls: bool = True
    """Check the server's TLS certificate; turn off only for a self-signed homelab host."""
    shutdown_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds a clean shutdown may take before the stop is reported as failed."""

    @field_validator("token_id")
    @classmethod
    def _token_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not _PROXMOX_TOKEN_ID.fullmatch(value):
            # Hidden in the message: a pasted token secret would land here.
            raise PydanticCustomError(
                SECRET_TYPE, "must look like 'user@realm!tokenname' (the secret goes in token_secret_env)"
            )
        return value


class CommandConfig(Section):
    status: NonBlank
    """Shell command that prints the power state (a word, mapped through `states`)."""
    start: NonBlank | None = None
    """Shell command that powers the machine on; None: it cannot be started from here."""
    stop: NonBlank | None = None
    """Shell command that powers the machine off; None: it cannot be stopped from here."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Seconds each command may run before it is killed and reported as failed."""
    states: dict[str, Annotated[PowerState, Strict(False)]] = Field(default_factory=dict)
    """Output word -> power state (``up = "running"``); the state names themselves always match."""


class ServiceConfig(Section):
    name: Slug
    """Short unique name within its VM (``ollama``, ``open-webui``)."""
    kind: Literal["ollama", "openai", "mlflow", "http"]
    """What speaks there: Ollama, an OpenAI-compatible server, MLflow, or any URL answering 200."""
    url: HttpUrl
    """Where it listens: the base URL (``http://127.0.0.1:11434``, ``http://host:8000/v1``), or the
    health URL itself for ``http`` services."""
    via_ssh: bool = False
    """Reach the URL through the VM's SSH connection, so its host is as seen from the VM."""
    api_key_env: EnvName | None = None
    """Environment variable holding the service's API key, if it needs one (or ``<NAME>_FILE``:
    a 0600 file). For ``mlflow``: the bearer token, or with `username` the password."""
    username: NonBlank | None = None
    """``mlflow`` only: the user for HTTP basic auth (MLflow's ``--app-name basic-auth``); the
    password is read from `api_key_env`. Not secret, so it may be written here."""

    @model_validator(mode="after")
    def _username_for_mlflow(self) -> Self:
        if self.username is None:
            return self
        if self.kind != "mlflow":
            raise ValueError(f"username is only used by mlflow services (basic auth), not {self.kind!r}")
        if self.api_key_env is None:
            raise ValueError("username needs api_key_env: the variable holding the password")
        return self


class VmConfig(Section):
    name: Slug
    """Short unique name shown everywhere (``inference``)."""
    provider: Literal["tensordock", "proxmox", "command", "static"]
    """Who powers it: TensorDock's API, Proxmox's API, shell commands, or nobody (always on)."""
    hourly_usd: float = Field(default=0.0, ge=0)
    """What it costs per hour while billed; 0 for hosts you already own."""
    idle_stop_minutes: float | None = Field(default=None, gt=0)
    """Stop it after this long idle; None: never stop it automatically."""
    ssh: SshTarget | None = None
    """``user@host[:port]`` or a Host alias from ~/.ssh/config; None: no telemetry or SSH services."""
    tensordock: TensorDockConfig | None = Field(default=None, validate_default=True)
    """Required when provider is ``tensordock``."""
    proxmox: ProxmoxConfig | None = Field(default=None, validate_default=True)
    """Required when provider is ``proxmox``."""
    command: CommandConfig | None = Field(default=None, validate_default=True)
    """Required when provider is ``command``."""
    service: list[ServiceConfig] = Field(default_factory=list)
    """The servers it runs (TOML ``[[vm.service]]``)."""
    poll_seconds: float = Field(default=15.0, gt=0)
    """Seconds between power-state checks with the provider."""

    @field_validator("tensordock", "proxmox", "command")
    @classmethod
    def _section_matches_provider(cls, value: Section | None, info: ValidationInfo) -> Section | None:
        provider = info.data.get("provider")  # absent when the provider itself was invalid
        if provider is None:
            return value
        if provider == info.field_name and value is None:
            raise ValueError(f"provider {provider!r} needs a [vm.{provider}] section")
        if provider != info.field_name and value is not None:
            raise ValueError(f"is a section for provider {info.field_name!r}, but provider is {provider!r}")
        return value

    @field_validator("service")
    @classmethod
    def _unique_service_names(cls, services: list[ServiceConfig]) -> list[ServiceConfig]:
        if dupes := _duplicates(s.name for s in services):
            raise ValueError(f"service names must be unique within a VM; repeated: {', '.join(dupes)}")
        return services

    @model_validator(mode="after")
    def _idle_stop_possible(self) -> Self:
        if self.idle_stop_minutes is None:
            return self
        if self.provider == "static":
            raise ValueError("idle_stop_minutes is set, but a static host cannot be stopped")
        if self.command is not None and self.command.stop is None:
            raise ValueError("idle_stop_minutes is set, but [vm.command] has no stop command")
        return self


class UiConfig(Section):
    theme: NonBlank = "aiconsole-dark"
    """Theme name; an unknown one is reported at start-up and the default is used."""
    read_only: bool = False
    """Hide every action that changes something (start, stop, pull, delete); like ``--read-only``."""


class ModelsConfig(Section):
    standard: list[ModelName] = Field(default_factory=lambda: ["deepseek-coder-v2:16b", "llama3.1:8b", "mistral:7b"])
    """Models suggested first when pulling: the set you keep on your inference VMs."""
    refresh_s: float = Field(default=30.0, ge=5, le=3600)
    """How often the Models tab re-reads each server's models while it shows."""
    context_length: int = Field(default=4096, ge=256, le=1_048_576)
    """The context assumed when estimating whether a model fits in VRAM (Ollama's default)."""


def _check_key_list(value: str) -> str:
    if not all(part.strip() for part in value.split(",")):
        raise ValueError("must be one or more comma-separated keys, e.g. 's' or 'ctrl+s,f5'")
    return value


class Settings(Section):
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    """Spending limits and alert thresholds."""
    vm: list[VmConfig] = Field(default_factory=list)
    """The fleet (TOML ``[[vm]]``), in display order."""
    ui: UiConfig = Field(default_factory=UiConfig)
    """Look and behaviour of the terminal UI."""
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    """GPU telemetry: sampling, thresholds, what counts as busy."""
    ssh: SshConfig = Field(default_factory=SshConfig)
    """How the console reaches VMs over SSH."""
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    """The model library: suggested models, refresh, fit estimates."""
    chat: ChatConfig = Field(default_factory=ChatConfig)
    """The chat: where it opens, ``auto`` routing, personas, history."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """The Training tab: how often MLflow is read, the stop guard's patience."""
    guard: GuardConfig = Field(default_factory=GuardConfig)
    """The on-VM dead-man's switch: its silence limit, GPU idle level and heartbeat interval."""
    keys: dict[str, Annotated[str, AfterValidator(_check_key_list)]] = Field(default_factory=dict)
    """Binding id -> comma-separated keys (``vm-start = "ctrl+s"``), overriding the defaults;
    the ids are listed in docs/keybindings.md."""

    @field_validator("keys")
    @classmethod
    def _known_key_ids(cls, keys: dict[str, str]) -> dict[str, str]:
        if unknown := unknown_key_ids(keys):
            raise ValueError(f"no binding has the id(s) {', '.join(unknown)}; see docs/keybindings.md")
        return keys

    @field_validator("vm")
    @classmethod
    def _unique_vm_names(cls, vms: list[VmConfig]) -> list[VmConfig]:
        # Case-insensitive: "Inference" and "inference" side by side would only confuse.
        if dupes := _duplicates(vm.name.lower() for vm in vms):
            raise ValueError(f"VM names must be unique (ignoring case); repeated: {', '.join(dupes)}")
        return vms

    @model_validator(mode="after")
    def _chat_target_exists(self) -> Self:
        chat = self.chat
        if chat.vm is None:
            return self
        vm = self.vm_named(chat.vm)
        if vm is None:
            raise ValueError(f"chat.vm {chat.vm!r} is not a [[vm]] of this config")
        chat_services = [s.name for s in vm.service if s.kind in MODEL_SERVER_KINDS]
        if chat.service is not None and chat.service not in chat_services:
            raise ValueError(f"chat.service {chat.service!r} is not an ollama or openai service of VM {vm.name!r}")
        if not chat_services:
            raise ValueError(f"chat.vm {chat.vm!r} has no ollama or openai service to chat with")
        return self

    def vm_named(self, name: str) -> VmConfig | None:
        return next((vm for vm in self.vm if vm.name == name), None)


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for name in names:
        (repeated if name in seen else seen).add(name)
    return sorted(repeated)


# --- loading and errors ------------------------------------------------------------------


def load_settings(path: Path) -> Settings:
    """Read and validate the config file at `path`; raises `ConfigError` describing every problem."""
    return settings_from_data(read_config_data(path), str(path))


def settings_from_toml_text(text: str, source_name: str = "<config>") -> Settings:
    """Parse and validate TOML text; `source_name` stands for the file in messages."""
    return settings_from_data(parse_config_text(text, source_name), source_name)


def settings_from_data(data: dict[str, Any], source_name: str = "<config>") -> Settings:
    """Validate already-parsed TOML data (a dict as tomllib returns it)."""
    problems = secret_key_problems(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        skip = {problem.loc for problem in problems}  # already reported, without their values
        errors = [err for err in exc.errors(include_url=False) if tuple(err["loc"]) not in skip]
        problems += [validation_problem(err, data, Settings) for err in errors]
    else:
        if not problems:
            return settings
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(f"  {p}" for p in problems)
    message = f"{source_name}: invalid config ({count}):\n{lines}"
    raise ConfigError(message, source=source_name, problems=tuple(problems))
