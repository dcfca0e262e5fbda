"""The on-VM dead-man's switch (issue 7): its settings, unit texts and the shell commands around it.

Pure: the script and unit templates are passed in as text (services/guard_files.py reads them),
and every command is returned as a string for the caller to run over SSH. Nothing here runs.

Safety: paths are validated to a plain character set AND shell-quoted; values written into the
systemd unit are escaped for systemd's own quoting (``\\``, ``"`` and the ``%`` specifier), and
control characters (a newline would start a new unit directive) are refused outright.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from aiconsole.domain.sanitize import sanitize_line

SCRIPT_PATH = "/usr/local/lib/aiconsole-guard/aiconsole-guard.sh"
UNIT_DIR = "/etc/systemd/system"
SERVICE_NAME = "aiconsole-guard.service"
TIMER_NAME = "aiconsole-guard.timer"
SYSLOG_IDENTIFIER = "aiconsole-guard"
DEFAULT_HEARTBEAT_PATH = "/var/lib/aiconsole-guard/heartbeat"
DEFAULT_INSTALLED_PATH = "/var/lib/aiconsole-guard/installed"
MIN_SILENCE_S = 60  # the timer runs once a minute: anything shorter cannot be honoured

_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]*")
_SAFE_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_path(field: str, value: str) -> None:
    if not _SAFE_PATH.fullmatch(value) or "/../" in value + "/" or value.endswith("/"):
        raise ValueError(f"guard {field} must be an absolute path of letters, digits and ._/- : {value!r}")


def _check_command(field: str, value: str) -> None:
    if not value.strip() or _CONTROL.search(value):
        raise ValueError(f"guard {field} must be a non-empty command on one line: {value!r}")


@dataclass(frozen=True)
class GuardSettings:
    """What the guard on one VM waits for. Defaults match the script's own defaults."""

    max_silence_s: int = 1800
    """Power off after this long without a heartbeat (seconds, at least 60)."""
    busy_util_pct: int = 10
    """A GPU above this utilisation (percent) keeps the VM up."""
    require_gpu: bool = True
    """When False, a host without nvidia-smi counts as GPU-idle; a failing nvidia-smi still keeps it up."""
    poweroff_command: str = "systemctl poweroff"
    """Split on blanks by the script, never evaluated by a shell."""
    heartbeat_path: str = DEFAULT_HEARTBEAT_PATH
    """The file whose mtime is the last heartbeat."""
    installed_path: str = DEFAULT_INSTALLED_PATH
    """The install marker: silence is counted from it until the first heartbeat."""
    nvidia_smi: str = "nvidia-smi"
    who: str = "who"
    log_path: str | None = None
    """Also append each decision here (it always goes to the journal)."""
    dry_run: bool = False
    """Log "would poweroff" instead of powering off."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_silence_s, int) or self.max_silence_s < MIN_SILENCE_S:
            raise ValueError(f"guard max_silence_s must be an integer >= {MIN_SILENCE_S}: {self.max_silence_s!r}")
        if not isinstance(self.busy_util_pct, int) or not 0 <= self.busy_util_pct <= 100:
            raise ValueError(f"guard busy_util_pct must be an integer from 0 to 100: {self.busy_util_pct!r}")
        for field in ("heartbeat_path", "installed_path"):
            _check_path(field, getattr(self, field))
        if self.log_path is not None:
            _check_path("log_path", self.log_path)
        for field in ("poweroff_command", "nvidia_smi", "who"):
            _check_command(field, getattr(self, field))

    def environment(self) -> dict[str, str]:
        """The script's environment variables for these settings."""
        env = {
            "AICONSOLE_GUARD_HEARTBEAT": self.heartbeat_path,
            "AICONSOLE_GUARD_INSTALLED": self.installed_path,
            "AICONSOLE_GUARD_MAX_SILENCE_S": str(self.max_silence_s),
            "AICONSOLE_GUARD_BUSY_UTIL_PCT": str(self.busy_util_pct),
            "AICONSOLE_GUARD_REQUIRE_GPU": "1" if self.require_gpu else "0",
            "AICONSOLE_GUARD_POWEROFF": self.poweroff_command,
            "AICONSOLE_GUARD_NVIDIA_SMI": self.nvidia_smi,
            "AICONSOLE_GUARD_WHO": self.who,
            "AICONSOLE_GUARD_DRY_RUN": "1" if self.dry_run else "0",
        }
        if self.log_path is not None:
            env["AICONSOLE_GUARD_LOG"] = self.log_path
        return env


@dataclass(frozen=True)
class GuardStatus:
    """What `status_command` reported. None means "not reported" (never a guess)."""

    installed: bool | None = None
    timer_state: str = "unknown"
    """systemctl's word for the timer: active, inactive, failed, … or unknown."""
    last_decision: str | None = None
    """The guard's last journal line, sanitised (it is remote output)."""
    heartbeat_age_s: int | None = None

    @property
    def active(self) -> bool:
        return self.timer_state == "active"


def systemd_environment_line(name: str, value: str) -> str:
    """One `Environment=` line, quoted so systemd reads back exactly `value`."""
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or _CONTROL.search(value):
        raise ValueError(f"cannot put {name}={value!r} in a unit file")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


def render_service(settings: GuardSettings, template: str, script_path: str = SCRIPT_PATH) -> str:
    """The service unit: `template` with its Environment lines and ExecStart filled in."""
    _check_path("script_path", script_path)
    lines = "\n".join(systemd_environment_line(k, v) for k, v in settings.environment().items())
    return template.replace("@ENVIRONMENT@", lines).replace("@SCRIPT_PATH@", script_path)


def render_timer(template: str) -> str:
    """The timer unit. It has no settings today; the function keeps callers symmetric."""
    return template


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def heartbeat_command(path: str = DEFAULT_HEARTBEAT_PATH) -> str:
    """Touch the heartbeat, as the SSH user. On a VM without the guard (no state directory)
    it does nothing and succeeds: it never creates directories as a side effect."""
    _check_path("heartbeat_path", path)
    directory, target = shlex.quote(_dirname(path)), shlex.quote(path)
    return f"if [ -d {directory} ]; then touch {target}; fi"


def _write_file(path: str, text: str, mode: str) -> str:
    """Write atomically (temp file + rename) so a dropped connection leaves no half-written unit."""
    tmp = shlex.quote(path + ".tmp")
    return f"printf '%s' {shlex.quote(text)} > {tmp} && chmod {mode} {tmp} && mv -f {tmp} {shlex.quote(path)}"


def install_commands(
    settings: GuardSettings,
    script_text: str,
    service_text: str,
    timer_text: str,
    owner: str,
    script_path: str = SCRIPT_PATH,
) -> list[str]:
    """Root's commands to install (or reinstall) the guard. `owner` is the SSH user that sends
    heartbeats: the state directory is theirs so `heartbeat_command` needs no sudo."""
    if not _SAFE_USER.fullmatch(owner):
        raise ValueError(f"guard owner must be a plain user name: {owner!r}")
    _check_path("script_path", script_path)
    q = shlex.quote
    state_dirs = sorted({_dirname(settings.heartbeat_path), _dirname(settings.installed_path)})
    return [
        f"mkdir -p {q(_dirname(script_path))}",
        *(f"mkdir -p {q(d)} && chown {q(owner)} {q(d)}" for d in state_dirs),
        _write_file(script_path, script_text, "0755"),
        _write_file(f"{UNIT_DIR}/{SERVICE_NAME}", service_text, "0644"),
        _write_file(f"{UNIT_DIR}/{TIMER_NAME}", timer_text, "0644"),
        # The marker must exist before the timer starts: on a running VM the boot delay is long
        # past, so `enable --now` runs the guard at once, and silence counts from this marker.
        f"touch {q(settings.installed_path)}",
        "systemctl daemon-reload",
        f"systemctl enable --now {TIMER_NAME}",
    ]


def remove_commands(settings: GuardSettings, script_path: str = SCRIPT_PATH) -> list[str]:
    """Root's commands to remove the guard. Each tolerates "already gone", so removal can be retried."""
    _check_path("script_path", script_path)
    q = shlex.quote
    state_dirs = sorted({_dirname(settings.heartbeat_path), _dirname(settings.installed_path)})
    return [
        f"systemctl disable --now {TIMER_NAME} 2>/dev/null || true",
        f"systemctl stop {SERVICE_NAME} 2>/dev/null || true",
        f"rm -f {UNIT_DIR}/{TIMER_NAME} {UNIT_DIR}/{SERVICE_NAME} {q(script_path)}",
        f"rmdir {q(_dirname(script_path))} 2>/dev/null || true",
        f"rm -f {q(settings.heartbeat_path)} {q(settings.installed_path)}",
        # rmdir, not rm -r: a directory someone else also uses keeps its other files.
        *(f"rmdir {q(d)} 2>/dev/null || true" for d in state_dirs),
        "systemctl daemon-reload",
    ]


def status_command(settings: GuardSettings | None = None, script_path: str = SCRIPT_PATH) -> str:
    """Root's one command that prints `key=value` lines for `parse_status`; it always exits 0,
    also under `set -e` (so `root_command_line([status_command()])` works too)."""
    settings = settings or GuardSettings()
    _check_path("script_path", script_path)
    q = shlex.quote
    return "; ".join(
        [
            f"if [ -f {q(script_path)} ] && [ -f {UNIT_DIR}/{TIMER_NAME} ]; then echo installed=yes; else echo installed=no; fi",
            f'echo "timer=$(systemctl is-active {TIMER_NAME} 2>/dev/null)"',
            f'echo "last=$(journalctl -t {SYSLOG_IDENTIFIER} -n 1 -o cat --no-pager 2>/dev/null | tail -n 1)"',
            f"m=$(stat -c %Y {q(settings.heartbeat_path)} 2>/dev/null || true)",
            'if [ -n "$m" ]; then echo "heartbeat_age=$(( $(date +%s) - m ))"; else echo heartbeat_age=none; fi',
        ]
    )


def root_command_line(commands: list[str]) -> str:
    """One command line running `commands` as root, stopping at the first failure. `sudo -n`
    fails instead of waiting for a password nobody can type into an exec channel."""
    return "sudo -n sh -c " + shlex.quote("set -e\n" + "\n".join(commands))


def parse_status(output: str) -> GuardStatus:
    """Read `status_command`'s output. Garbage or missing lines give None/"unknown", never an error."""
    fields: dict[str, str] = {}
    for line in (output or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in {"installed", "timer", "last", "heartbeat_age"}:
            fields.setdefault(key.strip(), value.strip())
    installed = {"yes": True, "no": False}.get(fields.get("installed", ""))
    timer = sanitize_line(fields.get("timer", ""), limit=40)
    timer_state = timer if re.fullmatch(r"[a-z-]+", timer) else "unknown"
    last = sanitize_line(fields.get("last", ""))
    age_text = fields.get("heartbeat_age", "")
    age = int(age_text) if re.fullmatch(r"-?[0-9]{1,12}", age_text) else None
    return GuardStatus(installed=installed, timer_state=timer_state, last_decision=last or None, heartbeat_age_s=age)
