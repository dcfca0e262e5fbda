"""Settings: valid configs of every provider, and errors that name file, field and value."""

from __future__ import annotations

import os
import re
import stat
import sys
import textwrap
import zoneinfo
from pathlib import Path

import pytest
from pydantic import ValidationError

from aiconsole.config import (
    STARTER_CONFIG,
    BudgetConfig,
    ConfigError,
    SecretError,
    Settings,
    load_settings,
    resolve_secret,
    secret_env_refs,
    settings_from_toml_text,
    write_starter_config,
)
from aiconsole.domain.power import PowerState

TENSORDOCK_VM = """
[[vm]]
name = "inference"
provider = "tensordock"
hourly_usd = 0.35
idle_stop_minutes = 30
ssh = "root@203.0.113.7:22"
[vm.tensordock]
instance_id = "abc-123"
[[vm.service]]
name = "ollama"
kind = "ollama"
url = "http://127.0.0.1:11434"
via_ssh = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Settings:
    return load_settings(write(tmp_path, text))


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message, "every error names the file"
    return message


# --- valid configs -------------------------------------------------------------------------


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.vm == [] and settings.keys == {}
    assert settings.budget == BudgetConfig()
    assert (settings.budget.daily_usd, settings.budget.monthly_usd) == (5.0, 50.0)
    assert (settings.budget.warn_at, settings.budget.alert_at) == (0.5, 0.8)
    assert (settings.budget.vm_daily_warn_usd, settings.budget.vm_daily_critical_usd) == (5.0, 10.0)
    assert settings.budget.timezone is None
    assert (settings.ui.theme, settings.ui.read_only) == ("aiconsole-dark", False)


def test_tensordock_vm(tmp_path: Path) -> None:
    vm = load(tmp_path, TENSORDOCK_VM).vm[0]
    assert (vm.name, vm.provider) == ("inference", "tensordock")
    assert (vm.hourly_usd, vm.idle_stop_minutes) == (0.35, 30)
    assert vm.tensordock is not None and vm.tensordock.instance_id == "abc-123"
    assert vm.tensordock.api_key_env == "TENSORDOCK_API_KEY"
    assert vm.tensordock.api_url == "https://dashboard.tensordock.com/api/v2"
    assert vm.proxmox is None and vm.command is None and vm.poll_seconds == 15.0
    assert vm.service[0].via_ssh is True and vm.service[0].kind == "ollama"


def test_proxmox_vm_with_literal_token_id(tmp_path: Path) -> None:
    vm = load(
        tmp_path,
        """
        [[vm]]
        name = "homelab-gpu"
        provider = "proxmox"
        [vm.proxmox]
        api_url = "https://pve.lan:8006/api2/json"
        node = "pve"
        vmid = 101
        guest = "lxc"
        token_id = "aiconsole@pve!console"
        verify_tls = false
        """,
    ).vm[0]
    assert vm.proxmox is not None
    assert (vm.proxmox.vmid, vm.proxmox.guest, vm.proxmox.verify_tls) == (101, "lxc", False)
    assert vm.proxmox.token_secret_env == "PROXMOX_TOKEN_SECRET" and vm.proxmox.shutdown_timeout_s == 120
    assert vm.hourly_usd == 0 and vm.idle_stop_minutes is None


def test_command_vm_maps_words_to_power_states(tmp_path: Path) -> None:
    vm = load(
        tmp_path,
        """
        [[vm]]
        name = "studio"
        provider = "command"
        idle_stop_minutes = 45
        [vm.command]
        status = "echo up"
        stop = "true"
        [vm.command.states]
        up = "running"
        down = "stopped"
        """,
    ).vm[0]
    assert vm.command is not None and vm.command.start is None and vm.command.timeout_s == 60
    assert vm.command.states == {"up": PowerState.RUNNING, "down": PowerState.STOPPED}


def test_static_vm_needs_no_section(tmp_path: Path) -> None:
    vm = load(tmp_path, '[[vm]]\nname = "brain"\nprovider = "static"\n').vm[0]
    assert vm.provider == "static" and vm.tensordock is vm.proxmox is vm.command is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, TENSORDOCK_VM)
    with pytest.raises(ValidationError):
        settings.vm[0].hourly_usd = 0  # type: ignore[misc]


def test_keys_and_ui(tmp_path: Path) -> None:
    text = '[ui]\ntheme = "nord"\nread_only = true\n[keys]\nvm-start = "s"\nvm-stop = "x,ctrl+x"\n'
    settings = load(tmp_path, text)
    assert settings.ui.read_only is True and settings.keys == {"vm-start": "s", "vm-stop": "x,ctrl+x"}


def test_unknown_key_id_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[keys]\nvm-strat = "s"\n')
    message = str(caught.value)
    assert str(tmp_path / "config.toml") in message and "keys" in message and "vm-strat" in message


@pytest.mark.skipif("Europe/Paris" not in zoneinfo.available_timezones(), reason="no tz database")
def test_known_timezone(tmp_path: Path) -> None:
    assert load(tmp_path, '[budget]\ntimezone = "Europe/Paris"\n').budget.timezone == "Europe/Paris"


def test_starter_config_validates_and_models_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_starter_config(path)
    settings = load_settings(path)
    assert [vm.name for vm in settings.vm] == ["inference", "training", "brain"]
    inference, training, brain = settings.vm
    assert inference.hourly_usd == training.hourly_usd == 0.35
    assert inference.idle_stop_minutes == training.idle_stop_minutes == 30
    assert [(s.name, s.kind, s.via_ssh) for s in inference.service] == [
        ("ollama", "ollama", True),
        ("open-webui", "http", False),
    ]
    assert inference.service[0].url == "http://127.0.0.1:11434"
    assert {s.url for s in training.service} == {"http://127.0.0.1:5001", "http://127.0.0.1:8000/health"}
    assert brain.provider == "static" and brain.service[0].url.endswith(":5000/")
    budget = settings.budget
    assert (budget.daily_usd, budget.monthly_usd, budget.warn_at, budget.alert_at) == (5, 50, 0.5, 0.8)
    assert (budget.vm_daily_warn_usd, budget.vm_daily_critical_usd) == (5, 10)


def test_starter_config_uses_documentation_addresses_only() -> None:
    addresses = set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", STARTER_CONFIG))
    assert addresses and all(a.startswith(("203.0.113.", "127.0.0.1")) for a in addresses)


def test_starter_config_commented_examples_validate() -> None:
    """Each commented block starting at '# [[vm]]' is valid once its '# ' is removed."""
    blocks = re.findall(r"^# \[\[vm\]\]\n(?:^#.*\n)*", STARTER_CONFIG, flags=re.MULTILINE)
    assert len(blocks) == 2
    uncommented = "\n".join(line.removeprefix("# ") for line in "".join(blocks).splitlines())
    settings = settings_from_toml_text(uncommented, "examples")
    assert [vm.provider for vm in settings.vm] == ["proxmox", "command"]
    keys = "\n".join(line.removeprefix("# ") for line in STARTER_CONFIG.split("# [keys]")[1].splitlines())
    assert settings_from_toml_text("[keys]" + keys, "keys").keys == {"vm-start": "s", "vm-stop": "x"}


# --- errors: each names the file, the field in TOML terms and the bad value ----------------


def test_wrong_type(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("hourly_usd = 0.35", 'hourly_usd = "cheap"'))
    assert "vm[0] (inference).hourly_usd = 'cheap'" in message and "valid number" in message


def test_strings_are_not_coerced_to_booleans(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("via_ssh = true", 'via_ssh = "yes"'))
    assert "vm[0] (inference).service[0] (ollama).via_ssh = 'yes'" in message


def test_negative_rate(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("hourly_usd = 0.35", "hourly_usd = -1.5"))
    assert "vm[0] (inference).hourly_usd = -1.5" in message and "greater than or equal to 0" in message


def test_unknown_provider(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[vm]]\nname = "x"\nprovider = "azure"\n')
    assert "vm[0] (x).provider = 'azure'" in message and "'tensordock'" in message


def test_missing_provider_section(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[vm]]\nname = "gpu"\nprovider = "tensordock"\n')
    assert "vm[0] (gpu).tensordock: provider 'tensordock' needs a [vm.tensordock] section" in message


def test_section_for_another_provider(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM + '[vm.command]\nstatus = "echo up"\n')
    assert "vm[0] (inference).command: is a section for provider 'command'" in message
    assert "provider is 'tensordock'" in message


def test_static_with_a_section_is_rejected(tmp_path: Path) -> None:
    text = '[[vm]]\nname = "brain"\nprovider = "static"\n[vm.tensordock]\ninstance_id = "a"\n'
    message = error_for(tmp_path, text)
    assert "vm[0] (brain).tensordock: is a section for provider 'tensordock'" in message


def test_missing_required_field_in_second_vm(tmp_path: Path) -> None:
    training = TENSORDOCK_VM.replace('"inference"', '"training"').replace('instance_id = "abc-123"', "")
    text = TENSORDOCK_VM + training
    message = error_for(tmp_path, text)
    assert "vm[1] (training).tensordock.instance_id: Field required" in message


def test_blank_instance_id(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace('"abc-123"', '"  "'))
    assert "vm[0] (inference).tensordock.instance_id = '  ': must not be empty" in message


def test_duplicate_vm_names(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM + TENSORDOCK_VM.replace('"inference"', '"Inference"'))
    assert "vm: VM names must be unique" in message and "inference" in message


def test_duplicate_service_names(tmp_path: Path) -> None:
    service = '[[vm.service]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:5000/"\n'
    message = error_for(tmp_path, '[[vm]]\nname = "brain"\nprovider = "static"\n' + service + service)
    assert "vm[0] (brain).service: service names must be unique within a VM; repeated: api" in message


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("hourly_usd", "houry_usd"))
    assert "vm[0] (inference).houry_usd = 0.35: unknown key; did you mean 'hourly_usd'?" in message


def test_unknown_section_lists_known_keys(tmp_path: Path) -> None:
    message = error_for(tmp_path, "[budgets]\ndaily = 3\n")
    assert "budgets: unknown key" in message and "budget" in message


def test_bad_url(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("http://127.0.0.1:11434", "127.0.0.1:11434"))
    assert "vm[0] (inference).service[0] (ollama).url = '127.0.0.1:11434'" in message
    assert "http:// or https://" in message


def test_bad_url_port(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("11434", "99999"))
    assert "service[0] (ollama).url = 'http://127.0.0.1:99999': has an invalid port" in message


def test_bad_timezone(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[budget]\ntimezone = "Mars/Olympus"\n')
    assert "budget.timezone = 'Mars/Olympus'" in message and "time zone" in message


def test_budget_must_be_positive_and_thresholds_ordered(tmp_path: Path) -> None:
    message = error_for(tmp_path, "[budget]\ndaily_usd = 0\n")
    assert "budget.daily_usd = 0: Input should be greater than 0" in message
    message = error_for(tmp_path, "[budget]\nwarn_at = 0.9\nalert_at = 0.8\n")
    assert "budget: warn_at (0.9) must not be above alert_at (0.8)" in message


def test_bad_vm_name(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[vm]]\nname = "my vm"\nprovider = "static"\n')
    assert "vm[0].name = 'my vm': must be 1-32 letters" in message


def test_ssh_target_cannot_be_an_option(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("root@203.0.113.7:22", "-oProxyCommand=sh"))
    assert "vm[0] (inference).ssh = '-oProxyCommand=sh'" in message


def test_idle_stop_on_a_static_host(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[vm]]\nname = "brain"\nprovider = "static"\nidle_stop_minutes = 30\n')
    assert "vm[0] (brain): idle_stop_minutes is set, but a static host cannot be stopped" in message


def test_unknown_power_state_word(tmp_path: Path) -> None:
    text = '[[vm]]\nname = "s"\nprovider = "command"\n[vm.command]\nstatus = "x"\n'
    text += '[vm.command.states]\nup = "on"\n'
    assert "vm[0] (s).command.states.up = 'on'" in error_for(tmp_path, text)


def test_empty_key_binding(tmp_path: Path) -> None:
    assert "keys.start = 's,': must be one or more" in error_for(tmp_path, '[keys]\nstart = "s,"\n')


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = TENSORDOCK_VM.replace("0.35", "-1").replace("true", '"yes"') + "[budget]\nmonthly_usd = -2\n"
    message = error_for(tmp_path, text)
    assert "(3 problems)" in message
    for field in ("budget.monthly_usd", "vm[0] (inference).hourly_usd", "(ollama).via_ssh"):
        assert field in message


def test_long_values_are_truncated(tmp_path: Path) -> None:
    message = error_for(tmp_path, f'[[vm]]\nname = "{"x" * 200}"\nprovider = "static"\n')
    assert "x" * 56 + "..." in message and "x" * 100 not in message


def test_problems_are_structured(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[budget]\ndaily_usd = -3\n"))
    [problem] = caught.value.problems
    assert (problem.field, problem.value) == ("budget.daily_usd", "-3")


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[budget]\ndaily_usd = 5.0\nmonthly_usd = = 50\n')
    assert "TOML syntax error at line 3, column" in message


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value) and "not found" in str(caught.value)
    assert "aiconsole init" in str(caught.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[ui]\ntheme = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path)


def test_settings_from_text_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^demo fleet: invalid config"):
        settings_from_toml_text("[budget]\ndaily_usd = -1\n", "demo fleet")


# --- secrets: never in the file, never in a message ----------------------------------------


def test_secret_keys_are_rejected_without_echoing_them(tmp_path: Path) -> None:
    text = TENSORDOCK_VM.replace('instance_id = "abc-123"', 'instance_id = "abc-123"\napi_key = "sk-live-1"')
    text += '[[vm.service]]\nname = "v"\nkind = "openai"\nurl = "http://h:8000/v1"\npassword = "hunter2"\n'
    message = error_for(tmp_path, text)
    assert "vm[0] (inference).tensordock.api_key: looks like a secret" in message
    assert "vm[0] (inference).service[1] (v).password: looks like a secret" in message
    assert "api_key_env" in message and "sk-live-1" not in message and "hunter2" not in message


def test_a_value_pasted_into_an_env_field_is_not_echoed(tmp_path: Path) -> None:
    text = TENSORDOCK_VM.replace('"abc-123"', '"abc-123"\napi_key_env = "sk-live-abc/def"')
    message = error_for(tmp_path, text)
    assert "vm[0] (inference).tensordock.api_key_env: must be the NAME" in message
    assert "sk-live" not in message


def test_credentials_in_urls_are_rejected_and_hidden(tmp_path: Path) -> None:
    message = error_for(tmp_path, TENSORDOCK_VM.replace("http://127.0.0.1", "http://admin:s3cret@127.0.0.1"))
    assert "(ollama).url: must not carry credentials" in message and "s3cret" not in message


def test_proxmox_token_id_that_looks_like_a_secret_is_hidden(tmp_path: Path) -> None:
    text = """
    [[vm]]
    name = "pve"
    provider = "proxmox"
    [vm.proxmox]
    api_url = "https://pve.lan:8006/api2/json"
    node = "pve"
    vmid = 100
    token_id = "0b7c9d3e-secret-uuid"
    """
    message = error_for(tmp_path, text)
    assert "vm[0] (pve).proxmox.token_id: must look like" in message and "0b7c9d3e" not in message


def test_resolve_secret_from_environment() -> None:
    secret = resolve_secret("TD_KEY", {"TD_KEY": "tok-123"})
    assert secret.reveal() == "tok-123" and "tok-123" not in repr(secret)


@pytest.mark.parametrize("environ", [{}, {"TD_KEY": ""}, {"TD_KEY": "  "}])
def test_resolve_secret_unset_names_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(SecretError, match="TD_KEY is not set") as caught:
        resolve_secret("TD_KEY", environ)
    assert caught.value.env_name == "TD_KEY" and "TD_KEY_FILE" in str(caught.value)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_resolve_secret_from_private_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("tok-from-file\n")
    path.chmod(0o600)
    assert resolve_secret("TD_KEY", {"TD_KEY_FILE": str(path)}).reveal() == "tok-from-file"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_resolve_secret_refuses_a_file_others_can_reach(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    path.write_text("tok-from-file\n")
    path.chmod(mode)
    with pytest.raises(SecretError, match="chmod 600") as caught:
        resolve_secret("TD_KEY", {"TD_KEY_FILE": str(path)})
    assert "tok-from-file" not in str(caught.value)


def test_resolve_secret_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read .*TD_KEY_FILE"):
        resolve_secret("TD_KEY", {"TD_KEY_FILE": str(tmp_path / "absent")})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(SecretError, match="is empty"):
        resolve_secret("TD_KEY", {"TD_KEY_FILE": str(empty)})


def test_secret_env_refs_lists_every_variable(tmp_path: Path) -> None:
    text = TENSORDOCK_VM.replace('via_ssh = true', 'via_ssh = true\napi_key_env = "OLLAMA_KEY"') + """
    [[vm]]
    name = "pve"
    provider = "proxmox"
    [vm.proxmox]
    api_url = "https://pve.lan:8006/api2/json"
    node = "pve"
    vmid = 100
    """
    refs = secret_env_refs(load(tmp_path, text))
    assert refs == [
        ("vm[0] (inference).tensordock.api_key_env", "TENSORDOCK_API_KEY"),
        ("vm[0] (inference).service[0] (ollama).api_key_env", "OLLAMA_KEY"),
        ("vm[1] (pve).proxmox.token_id_env", "PROXMOX_TOKEN_ID"),
        ("vm[1] (pve).proxmox.token_secret_env", "PROXMOX_TOKEN_SECRET"),
    ]


# --- writing the starter -------------------------------------------------------------------


def test_write_starter_creates_parents_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "config.toml"
    write_starter_config(path)
    assert path.read_text(encoding="utf-8") == STARTER_CONFIG
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_starter_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("mine = 1\n")
    with pytest.raises(FileExistsError):
        write_starter_config(path)
    assert path.read_text() == "mine = 1\n"


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_write_starter_does_not_follow_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(FileExistsError):
        write_starter_config(link)
    assert not (tmp_path / "elsewhere.toml").exists()


def test_config_module_does_not_import_textual() -> None:
    import subprocess

    script = "import sys, aiconsole.config; print(sorted(m for m in sys.modules if m.startswith('textual')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_single_brackets_for_an_array_of_tables(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[vm]\nname = "x"\nprovider = "static"\n')
    assert "vm: write each entry as [[vm]], with double brackets" in message


def test_booleans_are_shown_as_written_in_toml(tmp_path: Path) -> None:
    message = error_for(tmp_path, "[budget]\ndaily_usd = true\n")
    assert "budget.daily_usd = true: Input should be a valid number" in message


def test_unknown_key_in_the_gpu_and_ssh_sections_suggests_the_right_one(tmp_path: Path) -> None:
    """Suggestions come from the models themselves, so new sections get them too."""
    message = error_for(tmp_path, "[gpu]\ninterval = 2\n[ssh]\nmax_handshake = 4\n")
    assert "gpu.interval = 2: unknown key; did you mean 'interval_s'?" in message
    assert "ssh.max_handshake = 4: unknown key; did you mean 'max_handshakes'?" in message


def test_gpu_thresholds_must_be_ordered(tmp_path: Path) -> None:
    message = error_for(tmp_path, "[gpu]\ntemp_warn_c = 90\n")
    assert "gpu: temp_warn_c (90.0) must not be above temp_critical_c (85.0)" in message
