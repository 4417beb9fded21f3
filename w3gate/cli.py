"""``w3gate`` command line: ``serve`` (the default), ``plugins``, ``users``, ``token``, ``crust check``,
``--version``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
from pathlib import Path

from w3gate import __version__

EXIT_CONFIG = 2
# stdout closed by its reader (``w3gate users list | head``): the status a shell reports for a process that
# SIGPIPE killed (128 + 13), as ``yes | head`` gives; Python ignores SIGPIPE, so it is said explicitly
EXIT_BROKEN_PIPE = 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w3gate",
        description="IPFS Pinning Service API with web3 wallet sign-in, storing pins on the Crust Network.",
    )
    parser.add_argument(
        "--version", action="version",
        version=f"w3gate {__version__} (Python {platform.python_version()})",
    )
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the service (the default command)")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; env W3GATE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080; env W3GATE_PORT)")
    serve.add_argument("--data-dir", type=Path, help="where the SQLite database lives (env W3GATE_DATA_DIR)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--print-config", action="store_true", help="print the merged settings and exit")
    plugins = sub.add_parser("plugins", help="list the chain plugins that load, and any that failed")
    _common(plugins)
    from w3gate import users_cli

    users_cli.add_parser(sub, _common)
    from w3gate.token_cli import add_parser as add_token_parser

    _common(add_token_parser(sub))
    from w3gate.crust_cli import add_parser as add_crust_parser

    add_crust_parser(sub)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file (env W3GATE_CONFIG)")
    p.add_argument("--plugin-dir", type=Path, help="extra plugin directory (env W3GATE_PLUGIN_DIR)")


def with_default_command(argv: list[str]) -> list[str]:
    """``w3gate --port 8083`` is ``w3gate serve --port 8083``: options before any command are serve's.

    ``--help`` and ``--version`` stay the program's own (the help lists the commands).
    """
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return ["serve", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    """Run a command; a reader that closes its end early (``| head``) ends it quietly."""
    try:
        status = _main(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below, not a traceback
        return status
    except BrokenPipeError:
        # the idiom of the Python docs (signal module, "Note on SIGPIPE"): later flushes go to devnull
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(with_default_command(argv))
    command = args.command or "serve"
    from w3gate.config import ConfigError, describe, load_settings

    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": getattr(args, "data_dir", None),
        "log_level": getattr(args, "log_level", None),
        "plugin_dir": getattr(args, "plugin_dir", None),
    }
    try:
        settings = load_settings(getattr(args, "config", None), overrides=overrides)
    except ConfigError as exc:
        print(f"w3gate: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from w3gate.logs import setup_logging

    # a command other than serve logs only what went wrong (no database-open chatter): log_level "info"
    # is the service's; "debug" (the operator looking into something) and "warning"/"error" hold for all
    level = settings.log_level if command == "serve" or settings.log_level != "info" else "warning"
    setup_logging(level, settings.log_format)
    if command == "token":
        from w3gate.token_cli import run as run_token

        return run_token(args, settings)  # before the store's import: the command needs no database
    if command == "crust":
        from w3gate.crust_cli import run as run_crust

        return run_crust(args, settings)
    from w3gate.store.db import configure_sql_log

    configure_sql_log(settings.log_sql)
    if command == "plugins":
        from w3gate.plugins import PluginError, format_plugins, load_chains

        try:
            registry = load_chains(
                plugin_dir=settings.plugin_dir, strict=settings.plugins_strict,
                settings=settings.chains, allowed=settings.allowed_chains,
            )
        except PluginError as exc:
            print(f"w3gate: plugin error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(format_plugins(registry))
        return 0
    if command == "users":
        from w3gate import users_cli

        return users_cli.run(args, settings)
    if getattr(args, "print_config", False):
        print(json.dumps(describe(settings), indent=2, default=str))
        return 0
    return _serve(settings)


def _serve(settings: object) -> int:
    # no garbage collection while start-up imports and builds long-lived objects: start-to-ready
    # 0.88 -> 0.78 s (median of 6, pip-installed). What that leaves uncollected (about 11,000 objects
    # from import-time cycles) is frozen with the rest and kept: a bounded one-off. server.run freezes
    # and turns collection back on before it serves.
    gc.disable()
    import trio

    from w3gate.http.edge import BindError
    from w3gate.plugins import PluginError
    from w3gate.server import run
    from w3gate.store.migrations import SchemaTooNew
    from w3gate.store.single_instance import AlreadyRunning

    log = logging.getLogger("w3gate")
    try:
        trio.run(run, settings)
    except (BindError, PluginError, SchemaTooNew, AlreadyRunning) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # a crashed task: say why, exit non-zero
        log.critical("w3gate stopped on an error: %s", exc, exc_info=exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
