"""`aiconsole`: the console (no sub-command) and the scriptable commands beside it.

Nothing happens at import. `main` parses arguments, builds settings and services
(`assembly`), then either runs the Textual app or a short CLI command on the same core.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad config, bad arguments: the same status argparse uses


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command (`aiconsole --demo status`) must not be
    # reset by the sub-command's own default; `_COMMON_DEFAULTS` fills in what is missing.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="PATH", help="config file (default: $AICONSOLE_CONFIG, then the user config dir)")
    common.add_argument("--demo", action="store_true", help="use the built-in demo fleet (no accounts needed)")
    common.add_argument("--read-only", action="store_true", help="hide and refuse what changes things (start, stop, pull, rm)")

    parser = argparse.ArgumentParser(
        prog="aiconsole",
        parents=[common],
        description="A terminal console for your AI fleet: VMs, spend, idle timers.",
    )
    parser.add_argument("--theme", metavar="NAME", help="colour theme (aiconsole-dark, aiconsole-light, or your own)")
    parser.set_defaults(handler=_run_tui)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    init = commands.add_parser("init", parents=[common], help="write a commented starter config (never overwrites)")
    init.set_defaults(handler=_run_init)

    config = commands.add_parser("config", help="check the config").add_subparsers(metavar="ACTION", required=True)
    check = config.add_parser("check", parents=[common], help="validate the config and report problems")
    check.set_defaults(handler=_run_config_check)

    status = commands.add_parser("status", parents=[common], help="print the fleet's power, cost and idle time")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_run_status)

    gpus = commands.add_parser("gpus", parents=[common], help="print the GPUs of the running VMs")
    gpus.add_argument("--watch", action="store_true", help="keep printing, once per sampling interval")
    gpus.set_defaults(handler=_run_gpus)

    vm = commands.add_parser("vm", help="start or stop one VM").add_subparsers(metavar="ACTION", required=True)
    start = vm.add_parser("start", parents=[common], help="start a VM and wait until it runs")
    start.add_argument("name")
    start.set_defaults(handler=_run_vm_power, action="start")
    stop = vm.add_parser("stop", parents=[common], help="stop a VM (asks first) and wait until it stops")
    stop.add_argument("name")
    stop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    stop.add_argument(
        "--force", action="store_true",
        help="stop even while an MLflow run is RUNNING on it (--yes alone refuses then); implies --yes",
    )  # fmt: skip
    stop.set_defaults(handler=_run_vm_power, action="stop")
    _add_guard(vm, common)

    events = commands.add_parser(
        "events", parents=[common], help="print the event journal: starts, stops (and why), budget levels",
        description="The event journal, oldest first: every start and stop (by hand or automatic), refused "
        "and forced stops, budget levels and snoozes, with the VM's $/h and cost today at that moment.",
    )  # fmt: skip
    events.add_argument("vm", nargs="?", metavar="VM", help="only this VM's events")
    events.add_argument("--days", type=float, metavar="N", help="only the last N days (default: all)")
    events.add_argument("-n", type=int, default=200, metavar="N", dest="limit", help="at most the N newest (default 200)")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    events.set_defaults(handler=_run_events)

    orphans = commands.add_parser(
        "orphans", parents=[common], help="list TensorDock/Proxmox instances the config does not know, with $/h",
        description="List every TensorDock key and Proxmox node the config uses, once each, and print the "
        "instances no [[vm]] names: running ones first, with their $/h.",
        epilog=_ORPHANS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    orphans.add_argument("--json", action="store_true", help="machine-readable output")
    orphans.set_defaults(handler=_run_orphans)

    models = commands.add_parser("models", help="list, pull or remove Ollama models").add_subparsers(
        metavar="ACTION", required=True
    )
    listing = models.add_parser("list", parents=[common], help="the models of every running VM (or one)")
    listing.add_argument("vm", nargs="?", help="only this VM")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_run_models, action="list")
    pull = models.add_parser("pull", parents=[common], help="pull a model onto a VM, showing progress")
    pull.add_argument("vm")
    pull.add_argument("model")
    pull.set_defaults(handler=_run_models, action="pull")
    remove = models.add_parser("rm", parents=[common], help="delete a model from a VM (asks first)")
    remove.add_argument("vm")
    remove.add_argument("model")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=_run_models, action="rm")
    _add_runs(commands, common)
    _add_chat(commands, common)
    _add_watch(commands, common)
    return parser


_ORPHANS_EPILOG = """\
Accounts that cannot be listed are named on stderr with the reason. Exit status: 0 nothing
unknown is running (stopped unknown instances are still listed), 1 an instance the config
does not know is running (money may be leaking), 2 an account could not be listed (and
nothing unknown runs on the others) or bad usage.

examples:
  aiconsole orphans
  aiconsole orphans --json | jq -r '.orphans[] | select(.running) | .text'
"""

_GUARD_EPILOG = """\
The guard is a small script and a systemd timer on the VM (installed over SSH, as root through
`sudo -n`). It powers the VM off when no heartbeat came for [guard] silence_minutes AND the GPU
is idle AND nobody is logged in; the console and `aiconsole watch` send the heartbeats. Install
and remove are journaled (aiconsole events). Exit status: 0 done, 1 the VM, SSH or sudo failed
(or the VM is stopped), 2 bad usage.

examples:
  aiconsole vm guard install training
  aiconsole vm guard status training --json
  aiconsole vm guard remove training
"""


def _add_guard(vm, common: argparse.ArgumentParser) -> None:
    guard = vm.add_parser(
        "guard", help="the on-VM dead-man's switch: install, status, remove",
        description="Install, read or remove a VM's dead-man's switch.",
        epilog=_GUARD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(metavar="ACTION", required=True)  # fmt: skip
    for action, text in (
        ("install", "put the guard on a VM (or rewrite it with the current [guard] settings) and start it"),
        ("status", "whether the guard is installed and armed, its last decision and heartbeat"),
        ("remove", "stop the guard and delete its files from the VM"),
    ):
        parser = guard.add_parser(action, parents=[common], help=text)
        parser.add_argument("name", metavar="NAME")
        if action == "status":
            parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=_run_guard, action=action)


_RUNS_LIST_EPILOG = """\
Only mlflow services on a running VM are asked; a stopped VM's is named on stderr. The table
puts RUNNING runs first; for them LAST METRIC says how long ago the run last logged (a run
killed without ending stays RUNNING in MLflow). --json prints {"at", "servers": [{"vm",
"service", "vm_running", "power", "error", "fetched_at", "runs"}], "runs": [{"vm", "service",
"id", "name", "experiment_id", "experiment", "status", "start_time", "end_time", "duration_s",
"last_metric_at", "user", "params", "tags", "metrics": {KEY: {"value", "value_text", "step",
"timestamp"}}}]}: strict JSON, so a NaN or infinite metric has "value": null and "value_text"
"NaN", "Infinity" or "-Infinity" ("value_text" is null for a finite value). Exit status:
0 listed, 1 a server failed (the others are still listed) or no mlflow service, 2 bad usage.

examples:
  aiconsole runs list
  aiconsole runs list training --status RUNNING
  aiconsole runs list --json | jq -r '.runs[] | select(.status == "RUNNING") | .id'
"""

_RUNS_TAIL_EPILOG = """\
Prints the last N points of each metric, then every new point as it is logged, one line each:
STEP  KEY  VALUE  HH:MM:SS (local time; the value exact, NaN/Infinity/-Infinity spelled out).
Status lines (the run found, retries while MLflow does not answer, "run NAME ended: STATUS")
go to stderr, so a pipe gets only points. Exit status: 0 the run ended FINISHED, 1 it ended
FAILED or KILLED, or was not found, or the server refused; 2 bad usage; 130 Ctrl+C.

examples:
  aiconsole runs tail 3f2a9c0d41e84b6f8a0c1d2e3f4a5b6c
  aiconsole runs tail 3f2a9c0d41e84b6f8a0c1d2e3f4a5b6c --metric train_loss --metric eval_loss -n 50
  aiconsole runs tail 3f2a9c0d41e84b6f8a0c1d2e3f4a5b6c --vm training --interval 10 | tee loss.log
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is out of range (0.05 to 3600 seconds)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


_RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")  # MLflow's RunStatus


def _add_watch(commands, common: argparse.ArgumentParser) -> None:
    watch = commands.add_parser(
        "watch",
        parents=[common],
        help="enforce the idle and budget stops without the TUI (for a systemd service)",
        description="Run the money guard headless: idle auto-stop, budget levels and stops, guard "
        "heartbeats, orphan scan. When a console runs too, exactly one of them enforces (watch "
        "first); SIGTERM ends it cleanly. See docs/configuration.md for the systemd unit.",
    )
    watch.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (tests, benchmarks)")
    watch.add_argument(
        "--warmup", type=float, metavar="SECONDS",
        help="stop nothing during the first SECONDS, while the sources first report (default 60)",
    )  # fmt: skip
    watch.set_defaults(handler=_run_watch)


def _add_runs(commands, common: argparse.ArgumentParser) -> None:
    runs = commands.add_parser("runs", help="list MLflow runs or follow one's metrics").add_subparsers(
        metavar="ACTION", required=True
    )
    listing = runs.add_parser(
        "list", parents=[common], help="the runs of every mlflow service on a running VM (or one VM's)",
        description="List the MLflow runs of the fleet's tracking servers.",
        epilog=_RUNS_LIST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    listing.add_argument("vm", metavar="VM", nargs="?", help="only this VM's mlflow services")
    listing.add_argument("--json", action="store_true", help="machine-readable output (see below)")
    listing.add_argument("--status", metavar="S", type=str.upper, choices=_RUN_STATUSES,
                         help=f"only runs with this status ({', '.join(_RUN_STATUSES)})")  # fmt: skip
    listing.set_defaults(handler=_run_runs, action="list")
    tail = runs.add_parser(
        "tail", parents=[common], help="print a run's metric points as they are logged, until it ends",
        description="Follow one MLflow run's metrics until the run ends.",
        epilog=_RUNS_TAIL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    tail.add_argument("run_id", metavar="RUN_ID", help="the run's id (aiconsole runs list shows them)")
    tail.add_argument("--metric", metavar="KEY", action="append", dest="metrics",
                      help="only this metric (repeat for more; default: every metric)")  # fmt: skip
    tail.add_argument("--vm", metavar="VM", help="ask only this VM's mlflow services")
    tail.add_argument("-n", dest="last", metavar="N", type=_count, default=10,
                      help="points of each metric shown from before (default: 10)")  # fmt: skip
    tail.add_argument("--interval", metavar="S", type=_positive_float,
                      help="seconds between polls (default: [training] tail_s)")  # fmt: skip
    tail.set_defaults(handler=_run_runs, action="tail")


_CHAT_EPILOG = """\
The reply streams to stdout (escape sequences removed on a terminal, the text as sent when
piped); the chosen model goes to stderr first, TTFT, tokens and tokens/s after. Exit status:
0 answered, 1 the server or the start failed (or the VM is stopped), 2 bad usage, 130 Ctrl+C.

examples:
  aiconsole chat inference "Capital of Peru?"
  git diff | aiconsole chat inference "review this"
  aiconsole chat inference --persona editor --start - < draft.md
"""


def _add_chat(commands, common: argparse.ArgumentParser) -> None:
    chat = commands.add_parser(
        "chat", parents=[common], help="send a prompt to a VM's model server and stream the reply",
        description="Send one prompt to a VM's Ollama or OpenAI-compatible server and stream the reply.",
        epilog=_CHAT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    chat.add_argument("vm", metavar="VM", help="the VM whose model server answers")
    chat.add_argument(
        "prompt", metavar="PROMPT", nargs="?",
        help="the prompt; '-' (or none, with a pipe) reads stdin; with both, stdin is appended in a code block",
    )  # fmt: skip
    chat.add_argument("--service", metavar="S", help="which of the VM's ollama/openai services (default: its first)")
    chat.add_argument("--model", metavar="M", help="a model, or 'auto' to route by [[chat.route]] (default: [chat])")
    chat.add_argument("--persona", metavar="P", help="a [[chat.persona]], '' for none (default: [chat])")
    chat.add_argument("--start", action="store_true", help="start the VM first if it is stopped, without asking ($/h)")
    chat.add_argument("--no-history", dest="history", action="store_false", help="do not keep it in the chat history")
    chat.set_defaults(handler=_run_chat)


_COMMON_DEFAULTS = {"config": None, "demo": False, "read_only": False}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parse_args`, except that `chat`'s optional PROMPT may come after options
    (`chat inference --demo "hi"`): argparse fills positionals before the first option only."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(argv)
    if getattr(args, "prompt", "") is None:
        if extras[:1] == ["--"] and len(extras) == 2:  # `chat vm --demo -- "-v or -V?"`
            args.prompt, extras = extras[1], []
        elif len(extras) == 1 and not extras[0].startswith("-"):
            args.prompt, extras = extras[0], []
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    for name, default in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    env = dict(os.environ if environ is None else environ)
    try:
        return args.handler(args, env)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aiconsole ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _config_file(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    from aiconsole.paths import config_path

    return config_path(args.config, environ)


def _request(args: argparse.Namespace, environ: Mapping[str, str]):
    """What to run on: the demo or the user's config file (read, not yet validated)."""
    from aiconsole.runtime import RuntimeRequest

    if args.demo:
        return RuntimeRequest.for_demo(environ, read_only=args.read_only)
    return RuntimeRequest.for_user(_config_file(args, environ), environ, read_only=args.read_only)


def _load_runtime(args: argparse.Namespace, environ: Mapping[str, str], err: TextIO):
    """The Runtime, or None after printing the config problem (exit status 2)."""
    from aiconsole.config_file import ConfigError

    try:
        return _request(args, environ).load()
    except ConfigError as error:
        print(f"aiconsole: {error}", file=err)
        return None


def _run_tui(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """The console. The settings are validated just after the first frame (see runtime.py);
    a bad config then ends the app with status 2 and the same message as the CLI's."""
    from aiconsole.config_file import ConfigError

    try:
        request = _request(args, environ)
    except ConfigError as error:
        print(f"aiconsole: {error}", file=sys.stderr)
        return EXIT_USAGE
    from aiconsole.services.event_loop import run
    from aiconsole.ui.app import make_app

    app = make_app(request, theme_name=args.theme)
    try:
        run(app.run_async())  # not app.run(): on the loop that spaces network wakeups out
    finally:
        app.finish()
    return app.return_code or EXIT_OK


def _run_init(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.config_cmds import run_init

    return run_init(_config_file(args, environ), sys.stdout, sys.stderr)


def _run_config_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.config_cmds import run_config_check

    return run_config_check(_config_file(args, environ), sys.stdout, sys.stderr, environ=environ)


def _with_runtime(args: argparse.Namespace, environ: Mapping[str, str], command) -> int:
    """Build the runtime (exit 2 on a bad config), run `command(runtime)`, then clean up."""
    runtime = _load_runtime(args, environ, sys.stderr)
    if runtime is None:
        return EXIT_USAGE
    try:
        return command(runtime)
    finally:
        runtime.finish()


def _run_status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands import status_command

    return _with_runtime(args, environ, lambda runtime: status_command(runtime, as_json=args.json, out=sys.stdout))


def _run_gpus(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands_telemetry import gpus_command

    return _with_runtime(args, environ, lambda runtime: gpus_command(runtime, watch=args.watch, out=sys.stdout))


def _run_vm_power(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands import PowerRequest, power_command

    def power(runtime) -> int:
        request = PowerRequest(args.name, args.action, getattr(args, "yes", False), getattr(args, "force", False))
        return power_command(runtime, request, out=sys.stdout, err=sys.stderr, environ=environ)

    return _with_runtime(args, environ, power)


def _run_guard(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands_guard import GuardRequest, guard_command

    request = GuardRequest(args.action, args.name, as_json=getattr(args, "json", False))
    return _with_runtime(args, environ, lambda runtime: guard_command(runtime, request, out=sys.stdout, err=sys.stderr))


def _run_watch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands_watch import run_watch
    from aiconsole.services.event_loop import run

    def watch(runtime) -> int:
        return run(run_watch(runtime, sys.stdout, duration_s=args.duration, warmup_s=args.warmup, environ=environ))

    return _with_runtime(args, environ, watch)


def _run_events(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands_events import events_command

    def run(runtime) -> int:
        return events_command(
            runtime, vm=args.vm, days=args.days, limit=args.limit, as_json=args.json, out=sys.stdout, err=sys.stderr
        )

    return _with_runtime(args, environ, run)


def _run_orphans(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole.commands_orphans import orphans_command

    return _with_runtime(
        args, environ, lambda runtime: orphans_command(runtime, as_json=args.json, out=sys.stdout, err=sys.stderr)
    )


def _run_models(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole import commands_models

    def run(runtime) -> int:
        if args.action == "list":
            return commands_models.list_command(runtime, args.vm, as_json=args.json, out=sys.stdout, err=sys.stderr)
        if args.action == "pull":
            return commands_models.pull_command(runtime, args.vm, args.model, out=sys.stdout, err=sys.stderr)
        return commands_models.rm_command(
            runtime, args.vm, args.model, assume_yes=args.yes, out=sys.stdout, err=sys.stderr
        )

    return _with_runtime(args, environ, run)


def _run_runs(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole import commands_runs

    def run(runtime) -> int:
        if args.action == "list":
            return commands_runs.list_command(
                runtime, args.vm, status=args.status, as_json=args.json, out=sys.stdout, err=sys.stderr,
                environ=environ,
            )  # fmt: skip
        request = commands_runs.TailRequest(
            args.run_id, tuple(args.metrics) if args.metrics else None, args.vm, args.last, args.interval
        )
        return commands_runs.tail_command(runtime, request, out=sys.stdout, err=sys.stderr, environ=environ)

    return _with_runtime(args, environ, run)


def _run_chat(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiconsole import commands_chat

    try:
        prompt = commands_chat.read_prompt(args.prompt, sys.stdin)
    except commands_chat.UsageError as problem:
        print(f"aiconsole: {problem}", file=sys.stderr)
        return EXIT_USAGE
    request = commands_chat.ChatRequest(
        args.vm, prompt, service=args.service, model=args.model, persona=args.persona, start=args.start,
        history=args.history,
    )  # fmt: skip
    interactive = commands_chat.is_terminal(sys.stdin) and commands_chat.is_terminal(sys.stderr)
    console = commands_chat.Console(
        sys.stdout, sys.stderr, interactive=interactive,
        ask=lambda question: commands_chat.ask_on_terminal(question, sys.stderr, sys.stdin),
    )  # fmt: skip
    return _with_runtime(args, environ, lambda runtime: commands_chat.chat_command(runtime, request, console, environ))
