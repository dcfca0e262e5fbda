#!/bin/sh
# aiconsole-guard: the on-VM dead-man's switch (issue 7).
#
# A systemd timer runs this once a minute. It powers the machine off only when ALL hold:
#   (a) silence: the heartbeat file's mtime is older than MAX_SILENCE_S, or the heartbeat file is
#       missing and the install marker is older than MAX_SILENCE_S (missing marker too: keep);
#   (b) the GPU is idle: nvidia-smi ran, printed one integer per GPU, and every one is <= BUSY_UTIL_PCT;
#       nvidia-smi failing, hanging or printing anything else is "unknown", and unknown keeps the VM.
#       Only when nvidia-smi is not installed at all AND AICONSOLE_GUARD_REQUIRE_GPU=0 does
#       "no GPU" count as idle;
#   (c) no login session: `who` ran and printed no line (`who` failing is unknown: keep).
# Every run prints one line saying what it decided and why (stdout goes to the journal; the line
# is also appended, with a UTC timestamp, to AICONSOLE_GUARD_LOG when that is set).
#
# Self-contained POSIX sh (tested with dash): the VM needs no Python. Settings come from the
# environment (the systemd unit sets them). Command settings are split on blanks and never
# eval'ed, and globbing is off, so a value like "x; rm -rf /" is one odd argument, not a command.

set -f

HEARTBEAT=${AICONSOLE_GUARD_HEARTBEAT:-/var/lib/aiconsole-guard/heartbeat}
INSTALLED=${AICONSOLE_GUARD_INSTALLED:-/var/lib/aiconsole-guard/installed}
MAX_SILENCE_S=${AICONSOLE_GUARD_MAX_SILENCE_S:-1800}
BUSY_UTIL_PCT=${AICONSOLE_GUARD_BUSY_UTIL_PCT:-10}
REQUIRE_GPU=${AICONSOLE_GUARD_REQUIRE_GPU:-1}
POWEROFF=${AICONSOLE_GUARD_POWEROFF:-systemctl poweroff}
NVIDIA_SMI=${AICONSOLE_GUARD_NVIDIA_SMI:-nvidia-smi}
WHO=${AICONSOLE_GUARD_WHO:-who}
LOG=${AICONSOLE_GUARD_LOG:-}
DRY_RUN=${AICONSOLE_GUARD_DRY_RUN:-0}
# A wedged driver can make nvidia-smi hang; a hung run would stop the timer from firing again.
PROBE_TIMEOUT_S=${AICONSOLE_GUARD_PROBE_TIMEOUT_S:-30}

say() {
    printf '%s\n' "$1"
    if [ -n "$LOG" ]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >>"$LOG" 2>/dev/null || true
    fi
}

is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

# mtime in epoch seconds; GNU and busybox stat both know -c %Y, `date -r` covers the rest.
mtime() {
    stat -c %Y "$1" 2>/dev/null || date -r "$1" +%s 2>/dev/null
}

# Run a probe with a time limit where `timeout` exists (coreutils and busybox both ship one).
probe() {
    if command -v timeout >/dev/null 2>&1; then
        timeout "$PROBE_TIMEOUT_S" "$@"
    else
        "$@"
    fi
}

first_word() {
    set -- $1
    printf '%s' "${1:-}"
}

# A bad number is a broken install, not a reason to power off: say so and fail the unit.
require_uint() {
    if ! is_uint "$2"; then
        say "keep: bad setting AICONSOLE_GUARD_$1='$2'"
        exit 2
    fi
}
require_uint MAX_SILENCE_S "$MAX_SILENCE_S"
require_uint BUSY_UTIL_PCT "$BUSY_UTIL_PCT"
require_uint PROBE_TIMEOUT_S "$PROBE_TIMEOUT_S"

NOW=$(date +%s)

# (a) Silence since the last heartbeat, or since install when no heartbeat ever came.
if [ -e "$HEARTBEAT" ]; then
    since=$(mtime "$HEARTBEAT")
    if ! is_uint "$since"; then
        say "keep: heartbeat unreadable"
        exit 0
    fi
    silence=$((NOW - since))
    if [ "$silence" -lt "$MAX_SILENCE_S" ]; then
        say "keep: heartbeat ${silence}s ago"
        exit 0
    fi
    silence_text="no heartbeat for ${silence}s"
else
    since=$(mtime "$INSTALLED")
    if ! is_uint "$since"; then
        # No marker means a half-done install or a moved path: unknown, so keep.
        say "keep: no heartbeat and no install marker"
        exit 0
    fi
    silence=$((NOW - since))
    if [ "$silence" -lt "$MAX_SILENCE_S" ]; then
        say "keep: no heartbeat yet, installed ${silence}s ago"
        exit 0
    fi
    silence_text="no heartbeat for ${silence}s (none since install)"
fi

# (b) GPU utilisation: one integer per GPU, all at or under the busy level.
smi=$(first_word "$NVIDIA_SMI")
if [ -z "$smi" ] || ! command -v "$smi" >/dev/null 2>&1; then
    if [ "$REQUIRE_GPU" = 0 ]; then
        gpu_text="no GPU"
    else
        say "keep: GPU unreadable (${smi:-nvidia-smi} not found)"
        exit 0
    fi
else
    # shellcheck disable=SC2086  # word splitting of the command setting is intended
    if ! utils=$(probe $NVIDIA_SMI --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null); then
        say "keep: GPU unreadable (nvidia-smi failed)"
        exit 0
    fi
    utils=$(printf '%s\n' "$utils" | tr -d ' \r')
    list=""
    busy=""
    for util in $utils; do
        if ! is_uint "$util"; then
            say "keep: GPU unreadable (unexpected output)"
            exit 0
        fi
        list="${list:+$list, }${util}%"
        if [ "$util" -gt "$BUSY_UTIL_PCT" ]; then
            busy="${busy:+$busy, }${util}%"
        fi
    done
    if [ -z "$list" ]; then
        say "keep: GPU unreadable (no GPU listed)"
        exit 0
    fi
    if [ -n "$busy" ]; then
        say "keep: GPU busy ($busy)"
        exit 0
    fi
    gpu_text="GPU idle ($list)"
fi

# (c) Login sessions. The console's own SSH commands run without a terminal and are not in utmp,
# so they do not show here: that is what the heartbeat is for.
# shellcheck disable=SC2086
if ! sessions=$(probe $WHO 2>/dev/null); then
    say "keep: sessions unreadable (who failed)"
    exit 0
fi
count=$(printf '%s\n' "$sessions" | grep -c '[^[:space:]]')
if [ "$count" -gt 0 ]; then
    if [ "$count" -eq 1 ]; then
        say "keep: 1 session open"
    else
        say "keep: $count sessions open"
    fi
    exit 0
fi

reason="$silence_text, $gpu_text, no session"
case $DRY_RUN in
    '' | 0 | no | false)
        say "poweroff: $reason"
        # shellcheck disable=SC2086
        $POWEROFF
        status=$?
        if [ "$status" -ne 0 ]; then
            say "poweroff failed (exit $status)"
            exit 1
        fi
        ;;
    *)
        say "would poweroff (dry run): $reason"
        ;;
esac
exit 0
