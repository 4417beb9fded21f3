"""``w3gate crust check``: is a Crust chain usable by this release? Read-only (:mod:`w3gate.crust.check`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from w3gate.config import Settings

EXIT_USAGE = 2


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("crust", help="Crust chain tools: 'crust check' before funding an account")
    crust_sub = p.add_subparsers(dest="crust_command", required=True)
    check = crust_sub.add_parser(
        "check", help="connect to a Crust chain and say whether this release can order on it (spends nothing)",
        description="Reads the runtime version and metadata, says whether this release has verified types for it, "
                    "decodes a sample of live file records strictly, shows the order price for 1 MiB, 100 MiB "
                    "and 1 GiB and the ordering account's usable balance (if a secret is configured). Signs and "
                    "sends nothing. Exit status: 0 usable, 2 configuration error, 3 unreachable, 4 unsupported "
                    "runtime, 5 file records that do not decode.",
    )
    check.add_argument("--url", help="the chain's websocket endpoint (default: crust.url; env W3GATE_CRUST_URL)")
    check.add_argument("--config", type=Path, help="TOML configuration file (env W3GATE_CONFIG)")
    check.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    from w3gate.crust.check import UNREACHABLE, format_report, run_check

    # the report says what the client's start-up lines would (spec, calls, sizes): keep its stderr for trouble
    logging.getLogger("w3gate.crust").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    crust = settings.crust
    if args.url:
        if not args.url.startswith(("ws://", "wss://")):
            print("w3gate: --url: expected a ws or wss URL", file=sys.stderr)
            return EXIT_USAGE
        crust = dataclasses.replace(crust, url=args.url)
    report = run_check(crust)
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["exit_status"] == UNREACHABLE:
        print(f"w3gate crust check: {report['problems'][0]}", file=sys.stderr)
    else:
        print(format_report(report))
    return int(report["exit_status"])
