"""``meetvar liftingcast`` (LiftingCast's live feed into ``meet.state``) and ``meetvar openlifter``
(an OpenLifter file in as the roster, official results out). The work is in :mod:`meetvar.meetsoftware`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option


def register(sub: Any) -> None:
    lc = sub.add_parser("liftingcast", help="follow a LiftingCast live feed into meet.state")
    lc.add_argument("url", help="the feed's WebSocket URL (ws:// or wss://)")
    lc.add_argument("--meet-id", required=True, help="LiftingCast meet id")
    env_option(
        lc, "--password", env="MEETVAR_LIFTINGCAST_PASSWORD", required=True, help="the meet's password"
    )
    lc.add_argument("--api-key", help="API key (the hosted service allows one connection per key)")
    lc.add_argument("--broker", required=True, help="Kafka bootstrap HOST:PORT")
    lc.add_argument("--meet", required=True, help="our meet name (first part of the keys)")
    lc.add_argument(
        "--platform",
        action="append",
        required=True,
        metavar="LC_PLATFORM_ID=PLATFORM",
        help="map a LiftingCast platform id to our platform name (repeat for several)",
    )
    lc.add_argument("--ping-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    lc.add_argument("--dead-after", type=float, default=60.0, help=argparse.SUPPRESS)
    lc.set_defaults(func=cmd_liftingcast)

    ol = sub.add_parser("openlifter", help="OpenLifter files: the roster in, official results out")
    ol_sub = ol.add_subparsers(dest="openlifter_command", required=True)
    imp = ol_sub.add_parser("import", help="read a .openlifter file's roster and attempts")
    imp.add_argument("file", help="the .openlifter file")
    imp.add_argument("--json", action="store_true", help="print the roster as JSON")
    imp.set_defaults(func=cmd_openlifter_import)
    exp = ol_sub.add_parser("export", help="official results into OpenLifter's status arrays and OPL CSV")
    exp.add_argument("file", help="the meet's .openlifter file (read, not changed)")
    src = exp.add_mutually_exclusive_group(required=True)
    src.add_argument("--db", help="the dashboard's database (SQLite file or SQLAlchemy URL)")
    src.add_argument("--results", help="a JSON list of results, e.g. saved from GET /api/attempts")
    exp.add_argument("--meet", help="only this meet's lifts (with --db)")
    exp.add_argument("--out", help="write the updated .openlifter file here")
    exp.add_argument("--csv", help="write OpenPowerlifting's entries.csv here ('-' for stdout)")
    exp.set_defaults(func=cmd_openlifter_export)


def cmd_liftingcast(args: argparse.Namespace) -> int:
    from meetvar.meetsoftware.liftingcast import LiftingCastRefused, parse_platforms

    if not args.url.startswith(("ws://", "wss://")):
        raise UserError(f"{args.url!r} is not a WebSocket URL: it starts with ws:// or wss://")
    try:
        platforms = parse_platforms(args.platform)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        asyncio.run(_follow(args, platforms))
    except LiftingCastRefused as exc:
        raise UserError(str(exc)) from None
    return 0


async def _follow(args: argparse.Namespace, platforms: dict[str, str]) -> None:
    from meetvar.meetsoftware.liftingcast import LiftingCastFeed, kafka_publisher

    publish, stop = await kafka_publisher(args.broker)
    try:
        await LiftingCastFeed(
            args.url,
            args.meet_id,
            args.password,
            api_key=args.api_key,
            meet=args.meet,
            platforms=platforms,
            publish=publish,
            ping_interval_s=args.ping_interval,
            dead_after_s=args.dead_after,
        ).run()
    finally:
        await stop()


def cmd_openlifter_import(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from meetvar.meetsoftware.openlifter import OpenLifterError, load, roster

    try:
        lifters = roster(load(Path(args.file)))
    except OpenLifterError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps([dataclasses.asdict(lifter) for lifter in lifters]))
        return 0
    for lifter in lifters:
        marks = {1: "good", -1: "failed", 0: "planned"}
        done = ", ".join(
            f"{a.lift} {a.number} {'?' if a.weight_kg is None else f'{a.weight_kg:g}'} kg {marks[a.status]}"
            for a in lifter.attempts
        )
        print(f"{lifter.name} ({lifter.sex or '?'}, {lifter.division or '-'}): {done or 'no attempts'}")
    print(f"{len(lifters)} lifter(s)")
    return 0


def cmd_openlifter_export(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from meetvar.meetsoftware.openlifter import (
        OpenLifterError,
        apply_results,
        load,
        opl_csv,
        results_from_json,
        results_from_store,
    )

    if not args.out and not args.csv:
        raise UserError("say where the results go: --out FILE.openlifter and/or --csv FILE.csv")
    try:
        data = load(Path(args.file))
        if args.db:
            from dashboard.store import DashboardStore

            results = results_from_store(DashboardStore(args.db), args.meet)
        else:
            results = results_from_json(Path(args.results))
        updated, unmatched = apply_results(data, results)
    except OpenLifterError as exc:
        raise UserError(str(exc)) from None
    for line in unmatched:
        print(f"not in the roster: {line}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(updated, indent=2), encoding="utf-8")
    if args.csv:
        text = opl_csv(updated)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            Path(args.csv).write_text(text, encoding="utf-8")
    print(f"{len(results) - len(unmatched)} official result(s) exported", file=sys.stderr)
    return 0 if not unmatched else 1
