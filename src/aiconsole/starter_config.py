"""The commented starter config that `aiconsole init` writes: the operator's real fleet."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def write_starter_config(path: Path) -> None:
    """Write `STARTER_CONFIG` to a new file with mode 0600; raises FileExistsError if one is there.

    The exclusive create means nothing that exists, even created a moment ago, is overwritten.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # a file sits where a folder should: not "the config exists"
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path.parent)) from None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        if hasattr(os, "fchmod"):
            os.fchmod(handle.fileno(), 0o600)  # the umask may have taken the owner's bits too
        handle.write(STARTER_CONFIG)


STARTER_CONFIG = '''\
# aiconsole configuration, written by `aiconsole init`.
# Check it with `aiconsole config check` after every edit.
#
# Secrets never go in this file. A `*_env` key names the environment variable that holds
# the secret; instead of the variable itself you may set NAME_FILE to a file (mode 0600)
# holding it, e.g. TENSORDOCK_API_KEY_FILE=~/.config/aiconsole/tensordock.key
# The ids and addresses below are placeholders: replace them with your own.

[budget]
daily_usd = 5.0              # at 100 % of a budget, running VMs are stopped
monthly_usd = 50.0
warn_at = 0.5                # warn at 50 % of a budget
alert_at = 0.8               # alert at 80 %
vm_daily_warn_usd = 5.0      # one VM costing more than this in a day: warning
vm_daily_critical_usd = 10.0 # ... more than this: critical
# timezone = "Europe/Paris"  # where days and months start; default: this machine's zone

# inference: chat and code models. TensorDock EU, RTX 4090 24 GB, billed while running.
[[vm]]
name = "inference"
provider = "tensordock"      # tensordock | proxmox | command | static
hourly_usd = 0.35
idle_stop_minutes = 30       # stop after 30 idle minutes; leave out to never stop
ssh = "root@203.0.113.7:22"  # or a Host alias from ~/.ssh/config

[vm.tensordock]
instance_id = "00000000-0000-0000-0000-000000000001"  # from the TensorDock dashboard
api_key_env = "TENSORDOCK_API_KEY"
# api_url = "https://dashboard.tensordock.com/api/v2"

[[vm.service]]
name = "ollama"
kind = "ollama"              # ollama | openai | mlflow | http
url = "http://127.0.0.1:11434"
via_ssh = true               # Ollama listens on the VM only: reached through SSH

[[vm.service]]
name = "open-webui"
kind = "http"                # healthy when this URL answers 200
url = "http://203.0.113.7:3000/health"

# training: LoRA/QLoRA fine-tunes tracked in MLflow. TensorDock EU, RTX 4090 24 GB.
[[vm]]
name = "training"
provider = "tensordock"
hourly_usd = 0.35
idle_stop_minutes = 30
ssh = "root@203.0.113.8:22"

[vm.tensordock]
instance_id = "00000000-0000-0000-0000-000000000002"
api_key_env = "TENSORDOCK_API_KEY"

[[vm.service]]
name = "mlflow"
kind = "mlflow"              # the Training tab; a RUNNING run keeps the VM from stopping
url = "http://127.0.0.1:5001"
via_ssh = true
# api_key_env = "MLFLOW_TRACKING_TOKEN"   # if the server asks for a token
# username = "operator"                   # basic auth: then api_key_env holds the password

[[vm.service]]
name = "training-api"
kind = "http"
url = "http://127.0.0.1:8000/health"
via_ssh = true

# brain: the always-on free-tier ARM box; nothing to start, stop or pay.
[[vm]]
name = "brain"
provider = "static"
ssh = "ubuntu@203.0.113.20"

[[vm.service]]
name = "knowledge-api"
kind = "http"
url = "http://127.0.0.1:5000/"
via_ssh = true

# A Proxmox guest (homelab): remove the leading "# " to use it.
# [[vm]]
# name = "homelab-gpu"
# provider = "proxmox"
# hourly_usd = 0.0                     # electricity only
# idle_stop_minutes = 60
# ssh = "homelab-gpu"                  # a Host alias from ~/.ssh/config
# [vm.proxmox]
# api_url = "https://pve.lan:8006/api2/json"
# node = "pve"
# vmid = 101
# guest = "qemu"                       # qemu (VM) | lxc (container)
# token_id = "aiconsole@pve!console"   # not secret; or leave out and set PROXMOX_TOKEN_ID
# token_secret_env = "PROXMOX_TOKEN_SECRET"
# verify_tls = true                    # false only for a self-signed homelab certificate
# [[vm.service]]
# name = "localai"
# kind = "openai"
# url = "http://pve-gpu.lan:8080/v1"

# A machine powered by your own shell commands (here wake-on-LAN and ssh).
# [[vm]]
# name = "studio"
# provider = "command"
# ssh = "studio"
# idle_stop_minutes = 45
# [vm.command]
# status = "ping -c 1 -W 1 studio.lan >/dev/null && echo up || echo down"
# start = "wakeonlan 00:00:5e:00:53:01"
# stop = "ssh studio sudo shutdown -h now"
# timeout_s = 60
# [vm.command.states]                  # output word = power state
# up = "running"
# down = "stopped"

# The Chat tab and `aiconsole chat`.
[chat]
vm = "inference"
model = "auto"               # route each message by the rules below, or name one model
fallback_model = "llama3.1:8b"  # auto's answer when no rule matches: the general model
# default_persona = "editor"
history = true               # saved chats in <data dir>/chats.sqlite3 (ctrl+o)
start_on_demand = true       # sending to a stopped VM offers to start it ($/h shown)

[[chat.route]]               # tried in order; the first match chooses the model
name = "code"
model = "deepseek-coder-v2:16b"
code = true                  # code fences, code words, code symbols

[[chat.route]]
name = "quick"
model = "mistral:7b"
max_words = 12               # short questions get the fast model

[[chat.persona]]
name = "editor"
description = "Editorial assistant: drafts, titles, style, tags, FR/EN"
system = """You are the editorial assistant of a technical blog about running AI models on
one's own GPUs. You help draft and tighten posts, propose titles, review style (clear,
concrete, no hype), suggest tags and a two-sentence excerpt, and translate between French
and English keeping technical terms exact."""

# The Training tab, the MLflow runs' idle signal and the stop guard.
[training]
refresh_s = 15               # each MLflow server's runs, while its VM runs
tail_s = 3                   # the shown run's new metric points, while the tab shows
stop_check_timeout_s = 10    # no answer before a stop: asked twice, as for a RUNNING run

# The on-VM dead-man's switch (`aiconsole vm guard install NAME`): a VM with it powers itself
# off after silence_minutes without a heartbeat from the console or `aiconsole watch`, if its
# GPU is idle and nobody is logged in. Remove the leading "# " to change the defaults.
# [guard]
# silence_minutes = 20       # written into the VM at install: install again after a change
# busy_util_pct = 10         # a GPU busier than this keeps the VM up
# heartbeat_s = 60           # how often the console sends each running VM a heartbeat

[ui]
theme = "aiconsole-dark"
read_only = false            # true hides start, stop, pull and delete (like --read-only)

# Rebind keys: binding id = "key[,key...]"; the help screen (?) lists the binding ids.
# [keys]                    # binding id = keys; every id is in docs/keybindings.md
# vm-start = "s"
# vm-stop = "x"
'''
"""A commented starter config modelled on the operator's fleet; `aiconsole init` writes it."""
