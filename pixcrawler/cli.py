"""``pixcrawler``: the operator's command (config check/show/queues, broker, verify, exporter).

The Ansible preflight calls ``config check`` on the env file the app role's template
renders, so a value a worker would die of fails before any host changes. ``config
queues`` prints :data:`pixcrawler.celery_core.queues.QUEUES` for people; the preflight
imports that table itself.
Configuration errors exit with 2 and the :class:`SettingsError` text, never a traceback
and never a value (a broker URL carries a password).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pixcrawler import __version__, verify
from pixcrawler.celery_core.config import (
    CHECK_FILES_HERE,
    DEFAULT_ENV_FILE,
    ENV_FILE_VARIABLE,
    SettingsError,
    load_operator_settings,
)
from pixcrawler.celery_core.dryrun import worker_problems
from pixcrawler.celery_core.queues import DEFAULT_QUEUE, PRIORITY_STEPS, QUEUES

EXIT_OK, EXIT_USAGE = 0, 2


def _settings_or_exit(env_file: str | None) -> Any:
    try:
        settings, _source = load_operator_settings(env_file)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    return settings


def config_check(args: argparse.Namespace) -> int:
    """Parse the settings, then build from them what a worker and beat build.

    Values that parse can still kill a worker at runtime; the dry run catches those too,
    naming the variable, before anything is restarted with them.
    """
    token = CHECK_FILES_HERE.set(not args.files_on_host)
    try:
        problems = worker_problems(_settings_or_exit(args.env_file))
    finally:
        CHECK_FILES_HERE.reset(token)
    if problems:
        print(SettingsError(problems), file=sys.stderr)
        return EXIT_USAGE
    print("configuration OK")
    return EXIT_OK


def _text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_show(args: argparse.Namespace) -> int:
    shown: dict[str, Any] = _settings_or_exit(args.env_file).display()
    if args.json:
        print(json.dumps(shown, indent=2, sort_keys=True))
    else:
        for key, value in shown.items():
            print(f"{key}={_text_value(value)}")
    return EXIT_OK


def queue_table() -> dict[str, Any]:
    return {
        "default_queue": DEFAULT_QUEUE,
        "priority_steps": list(PRIORITY_STEPS),
        "queues": [
            {
                "name": q.name,
                "redis_priority": q.redis_priority,
                "patterns": list(q.patterns),
                "description": q.description,
            }
            for q in QUEUES
        ],
    }


def config_queues(args: argparse.Namespace) -> int:
    table = queue_table()
    if args.json:
        print(json.dumps(table, indent=2))
        return EXIT_OK
    rows = [("QUEUE", "REDIS PRIORITY", "TASKS", "DESCRIPTION")]
    for q in table["queues"]:
        patterns = ", ".join(q["patterns"]) or f"(unrouted tasks: {DEFAULT_QUEUE})"
        rows.append((q["name"], str(q["redis_priority"]), patterns, q["description"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]))
    print("(Redis serves priority 0 first.)")
    return EXIT_OK


def broker_unacked(args: argparse.Namespace) -> int:
    from pixcrawler.celery_core.app import create_app
    from pixcrawler.celery_core.leftovers import unacked_by_node

    app = create_app(_settings_or_exit(args.env_file))
    counts = unacked_by_node(app)
    if args.json:
        print(json.dumps(counts, indent=2, sort_keys=True))
    else:
        for node, count in sorted(counts.items()):
            print(f"{node or '(unknown)'}  {count}")
    return EXIT_OK


def broker_requeue(args: argparse.Namespace) -> int:
    from pixcrawler.celery_core.app import create_app
    from pixcrawler.celery_core.leftovers import NodeAlive, requeue

    app = create_app(_settings_or_exit(args.env_file))
    try:
        count = requeue(app, args.node, force=args.force)
    except NodeAlive as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"requeued {count} unacknowledged deliveries of {args.node}")
    return EXIT_OK


def run_exporter(args: argparse.Namespace) -> int:
    """Serve Prometheus metrics on EXPORTER_ADDRESS:EXPORTER_PORT until stopped."""
    import logging

    from pixcrawler.exporter.server import serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return serve(_settings_or_exit(args.env_file))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixcrawler", description="PixCrawler operator commands.")
    parser.add_argument("--version", action="version", version=f"pixcrawler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument(
        "--env-file",
        metavar="PATH",
        help=f"settings file (default: ${ENV_FILE_VARIABLE}, else "
        f"{DEFAULT_ENV_FILE} if it exists, else the process environment)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check",
        parents=[env_file],
        help="validate the settings and what a worker builds from them; exit 2 naming each problem",
    )
    check.add_argument(
        "--files-on-host",
        action="store_true",
        help="the CA bundles and certificates the settings name are on the host that will"
        " read them, not here: do not look for them (the Ansible preflight on the controller)",
    )
    check.set_defaults(handler=config_check)
    show = config_commands.add_parser(
        "show", parents=[env_file, as_json], help="effective settings, secrets redacted"
    )
    show.set_defaults(handler=config_show)
    queues = config_commands.add_parser(
        "queues", parents=[as_json], help="the queue table every component routes by"
    )
    queues.set_defaults(handler=config_queues)

    broker = commands.add_parser("broker", help="deliveries held by worker nodes")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    unacked = broker_commands.add_parser(
        "unacked", parents=[env_file, as_json], help="unacknowledged deliveries per worker node"
    )
    unacked.set_defaults(handler=broker_unacked)
    requeue = broker_commands.add_parser(
        "requeue",
        parents=[env_file],
        help="requeue a node's unacknowledged deliveries now (a node that will not return)",
    )
    requeue.add_argument("node", help="worker node name, e.g. crawl@worker1")
    requeue.add_argument(
        "--force", action="store_true", help="even if a worker of that name answers a ping"
    )
    requeue.set_defaults(handler=broker_requeue)

    exporter = commands.add_parser(
        "exporter",
        parents=[env_file],
        help="serve Prometheus metrics (queues, workers, task outcomes, Redis, Sentinels,"
        " image store) on EXPORTER_ADDRESS:EXPORTER_PORT",
    )
    exporter.set_defaults(handler=run_exporter)

    check_run = commands.add_parser(
        "verify",
        help="check broker, backend, consumers and a task through every queue",
        description=verify.build_parser().description,
    )
    verify.add_arguments(check_run)
    check_run.set_defaults(handler=verify.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
