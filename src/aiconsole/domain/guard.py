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
from datetime import datetime

from aiconsole.domain.format import format_age, format_duration
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
class GuardLayout:
    """Where the guard lives on a VM. The defaults are the real places; `under(root)` moves
    every one below `root` (the tests run the real command lines against a temp dir)."""

    script_path: str = SCRIPT_PATH
    unit_dir: str = UNIT_DIR
    heartbeat_path: str = DEFAULT_HEARTBEAT_PATH
    installed_path: str = DEFAULT_INSTALLED_PATH

    def __post_init__(self) -> None:
        for field in ("script_path", "unit_dir", "heartbeat_path", "installed_path"):
            _check_path(field, getattr(self, field))

    @classmethod
    def under(cls, root: str) -> GuardLayout:
        base = cls()
        return cls(*(root.rstrip("/") + path for path in (
            base.script_path, base.unit_dir, base.heartbeat_path, base.installed_path
        )))  # fmt: skip


@dataclass(frozen=True)
class GuardStatus:
    """What `status_command` reported. None means "not reported" (never a guess)."""

    installed: bool | None = None
    timer_state: str = "unknown"
    """systemctl's word for the timer: active, inactive, failed, … or unknown."""
    last_decision: str | None = None
    """The guard's last journal line, sanitised (it is remote output)."""
    heartbeat_age_s: int | None = None
    max_silence_s: int | None = None
    """The installed unit's silence limit (read from its Environment line), when installed."""
    dry_run: bool | None = None
    """Whether the installed unit only logs "would poweroff"."""
    heartbeat: str | None = None
    """From `heartbeat_status_command`: "sent", "failed" (the file could not be touched) or
    "none" (no state directory: no guard to beat for)."""

    @property
    def active(self) -> bool:
        return self.timer_state == "active"

    @property
    def armed(self) -> bool:
        """Installed and its timer running: the VM powers itself off after the silence."""
        return self.installed is True and self.active


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
    unit_dir: str = UNIT_DIR,
) -> list[str]:
    """Root's commands to install (or reinstall) the guard. `owner` is the SSH user that sends
    heartbeats: the state directory is theirs so `heartbeat_status_command` needs no sudo."""
    if not _SAFE_USER.fullmatch(owner):
        raise ValueError(f"guard owner must be a plain user name: {owner!r}")
    _check_path("script_path", script_path)
    _check_path("unit_dir", unit_dir)
    q = shlex.quote
    state_dirs = sorted({_dirname(settings.heartbeat_path), _dirname(settings.installed_path)})
    return [
        f"mkdir -p {q(_dirname(script_path))}",
        *(f"mkdir -p {q(d)} && chown {q(owner)} {q(d)}" for d in state_dirs),
        _write_file(script_path, script_text, "0755"),
        _write_file(f"{unit_dir}/{SERVICE_NAME}", service_text, "0644"),
        _write_file(f"{unit_dir}/{TIMER_NAME}", timer_text, "0644"),
        # The marker must exist before the timer starts: on a running VM the boot delay is long
        # past, so `enable --now` runs the guard at once, and silence counts from this marker.
        f"touch {q(settings.installed_path)}",
        "systemctl daemon-reload",
        f"systemctl enable --now {TIMER_NAME}",
    ]


def remove_commands(settings: GuardSettings, script_path: str = SCRIPT_PATH, unit_dir: str = UNIT_DIR) -> list[str]:
    """Root's commands to remove the guard. Each tolerates "already gone", so removal can be retried."""
    _check_path("script_path", script_path)
    _check_path("unit_dir", unit_dir)
    q = shlex.quote
    state_dirs = sorted({_dirname(settings.heartbeat_path), _dirname(settings.installed_path)})
    return [
        f"systemctl disable --now {TIMER_NAME} 2>/dev/null || true",
        f"systemctl stop {SERVICE_NAME} 2>/dev/null || true",
        f"rm -f {q(unit_dir + '/' + TIMER_NAME)} {q(unit_dir + '/' + SERVICE_NAME)} {q(script_path)}",
        f"rmdir {q(_dirname(script_path))} 2>/dev/null || true",
        f"rm -f {q(settings.heartbeat_path)} {q(settings.installed_path)}",
        # rmdir, not rm -r: a directory someone else also uses keeps its other files.
        *(f"rmdir {q(d)} 2>/dev/null || true" for d in state_dirs),
        "systemctl daemon-reload",
    ]


_SILENCE_SED = r"""s/^Environment="AICONSOLE_GUARD_MAX_SILENCE_S=\([0-9]*\)"$/\1/p"""
_DRY_RUN_LINE = '^Environment="AICONSOLE_GUARD_DRY_RUN=1"$'


def _unit_facts(unit_dir: str) -> list[str]:
    """Lines printing what the installed service unit says (readable without root: mode 0644)."""
    q = shlex.quote
    unit = q(f"{unit_dir}/{SERVICE_NAME}")
    return [
        f"sl=$(sed -n {q(_SILENCE_SED)} {unit} 2>/dev/null | head -n 1)",
        'echo "silence_s=$sl"',
        f"if grep -q {q(_DRY_RUN_LINE)} {unit} 2>/dev/null; then echo dry_run=yes; else echo dry_run=no; fi",
    ]


def _installed_lines(script_path: str, unit_dir: str) -> list[str]:
    q = shlex.quote
    files = f"[ -f {q(script_path)} ] && [ -f {q(unit_dir + '/' + TIMER_NAME)} ]"
    return [
        f"if {files}; then echo installed=yes; else echo installed=no; fi",
        f'echo "timer=$(systemctl is-active {TIMER_NAME} 2>/dev/null)"',
        *_unit_facts(unit_dir),
    ]


def status_command(
    settings: GuardSettings | None = None, script_path: str = SCRIPT_PATH, unit_dir: str = UNIT_DIR
) -> str:
    """Root's one command that prints `key=value` lines for `parse_status`; it always exits 0,
    also under `set -e` (so `root_command_line([status_command()])` works too)."""
    settings = settings or GuardSettings()
    _check_path("script_path", script_path)
    _check_path("unit_dir", unit_dir)
    q = shlex.quote
    return "; ".join(
        [
            *_installed_lines(script_path, unit_dir),
            f'echo "last=$(journalctl -t {SYSLOG_IDENTIFIER} -n 1 -o cat --no-pager 2>/dev/null | tail -n 1)"',
            f"m=$(stat -c %Y {q(settings.heartbeat_path)} 2>/dev/null || true)",
            'if [ -n "$m" ]; then echo "heartbeat_age=$(( $(date +%s) - m ))"; else echo heartbeat_age=none; fi',
        ]
    )


def heartbeat_status_command(
    settings: GuardSettings | None = None, script_path: str = SCRIPT_PATH, unit_dir: str = UNIT_DIR
) -> str:
    """The console's one exec per heartbeat, as the SSH user (no sudo): touch the heartbeat
    where the guard's state directory exists (never creating it), then print what
    `parse_status` reads: `heartbeat=sent|failed|none`, installed, timer, silence_s, dry_run.
    No journal and no clock on the VM: cheap enough to run every minute on every VM. Exits 0."""
    settings = settings or GuardSettings()
    _check_path("script_path", script_path)
    _check_path("unit_dir", unit_dir)
    directory, target = shlex.quote(_dirname(settings.heartbeat_path)), shlex.quote(settings.heartbeat_path)
    touch = (
        f"if [ -d {directory} ]; then if touch {target} 2>/dev/null; then echo heartbeat=sent; "
        "else echo heartbeat=failed; fi; else echo heartbeat=none; fi"
    )
    return "; ".join([touch, *_installed_lines(script_path, unit_dir)])


def root_command_line(commands: list[str]) -> str:
    """One command line running `commands` as root, stopping at the first failure. `sudo -n`
    fails instead of waiting for a password nobody can type into an exec channel."""
    return "sudo -n sh -c " + shlex.quote("set -e\n" + "\n".join(commands))


_STATUS_KEYS = {"installed", "timer", "last", "heartbeat_age", "silence_s", "dry_run", "heartbeat"}
_NO_ENTRIES = re.compile(r"-- No entries --|No journal files were (found|opened).*")


def parse_status(output: str) -> GuardStatus:
    """Read `status_command`'s output. Garbage or missing lines give None/"unknown", never an error."""
    fields: dict[str, str] = {}
    for line in (output or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in _STATUS_KEYS:
            fields.setdefault(key.strip(), value.strip())
    yes_no = {"yes": True, "no": False}
    timer = sanitize_line(fields.get("timer", ""), limit=40)
    timer_state = timer if re.fullmatch(r"[a-z-]+", timer) else "unknown"
    last = sanitize_line(fields.get("last", ""))
    if _NO_ENTRIES.fullmatch(last):  # journalctl's words for "nothing logged yet", not a decision
        last = ""
    heartbeat = fields.get("heartbeat")
    return GuardStatus(
        installed=yes_no.get(fields.get("installed", "")),
        timer_state=timer_state,
        last_decision=last or None,
        heartbeat_age_s=_int_or_none(fields.get("heartbeat_age", ""), signed=True),
        max_silence_s=_int_or_none(fields.get("silence_s", "")),
        dry_run=yes_no.get(fields.get("dry_run", "")),
        heartbeat=heartbeat if heartbeat in ("sent", "failed", "none") else None,
    )


def _int_or_none(text: str, *, signed: bool = False) -> int | None:
    pattern = r"-?[0-9]{1,12}" if signed else r"[0-9]{1,12}"
    return int(text) if re.fullmatch(pattern, text) else None


def _limit_text(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else format_duration(seconds)


@dataclass(frozen=True)
class GuardView:
    """What the console knows of one VM's guard, for its pane (`GuardHeartbeat.state`)."""

    checked_at: datetime
    """When the latest heartbeat attempt ended."""
    installed: bool | None = None
    """None until a heartbeat got an answer."""
    timer_state: str = "unknown"
    silence_limit_s: int | None = None
    """The installed unit's limit, read from the VM; None when not installed or not readable."""
    dry_run: bool = False
    last_sent_at: datetime | None = None
    """When a heartbeat last touched the VM's heartbeat file (kept across failed attempts)."""
    error: str = ""
    """Why the latest attempt failed (sanitised, one line); "" when it succeeded."""

    @property
    def armed(self) -> bool:
        return self.installed is True and self.timer_state == "active"

    @property
    def failing(self) -> bool:
        """The latest heartbeat did not reach an installed (or unknown) guard: the VM's
        silence is growing, so the pane should say it loudly."""
        return bool(self.error) and self.installed is not False

    def text(self, now: datetime) -> str:
        """One short line: "guard armed · heartbeat 12s ago", "guard not installed", …"""
        sent = None if self.last_sent_at is None else (now - self.last_sent_at).total_seconds()
        if self.error:
            facts = [f"last sent {format_age(sent)}"] if sent is not None else []
            if self.silence_limit_s is not None and self.installed:
                facts.append(f"powers off after {_limit_text(self.silence_limit_s)} of silence")
            more = f" ({', '.join(facts)})" if facts else ""
            return sanitize_line(f"guard: heartbeat failed{more}: {self.error}", 200)
        if self.installed is False:
            return "guard not installed"
        if self.installed is None:
            return "guard: state unknown"
        head = "guard armed" if self.armed else f"guard installed, timer {self.timer_state}"
        if self.dry_run:
            head += " (dry run)"
        if self.silence_limit_s is not None:
            head += f" ({_limit_text(self.silence_limit_s)})"
        return f"{head} · heartbeat {format_age(sent)}"
