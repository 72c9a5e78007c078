"""``meetvar agreement --db DB [--meet M] [--json [OUT] | --csv [OUT] | --html OUT]``: the shadow-mode
agreement report (the system's calls against the official lights, the confusion table, Cohen's κ with
its 95 % interval, the disagreements with links to their replays) from a dashboard's database, after
the meet, without a running dashboard. The numbers are :mod:`dashboard.agreement`'s, so they equal
``GET /api/agreement`` of the organizer on the same database."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from meetvar.errors import UserError


def register(sub: Any) -> None:
    ag = sub.add_parser(
        "agreement", help="shadow mode: the system's calls against the official lights (κ, table, CSV, page)"
    )
    ag.add_argument("--db", required=True, help="the dashboard's database (SQLite file or SQLAlchemy URL)")
    ag.add_argument("--meet", help="only this meet's lifts")
    ag.add_argument(
        "--base-url",
        default="",
        help="the dashboard's address, to make the replay links absolute (e.g. https://var.example.org)",
    )
    out = ag.add_mutually_exclusive_group()
    out.add_argument(
        "--json", nargs="?", const="-", metavar="OUT", help="the report as JSON (to OUT, or stdout)"
    )
    out.add_argument(
        "--csv", nargs="?", const="-", metavar="OUT", help="one row per attempt (to OUT, or stdout)"
    )
    out.add_argument("--html", metavar="OUT", help="write the printable page (self-contained HTML) to OUT")
    ag.set_defaults(func=cmd_agreement)


def _open_store(target: str) -> Any:
    """The dashboard's store, refusing a SQLite path that does not exist (opening it would make an
    empty database and report nothing, silently)."""
    from dashboard.store import DashboardStore

    if "://" not in target and not Path(target).is_file():
        raise UserError(f"--db {target}: no such database file (give the dashboard's --db file or a URL)")
    try:
        return DashboardStore(target)
    except Exception as exc:  # a driver's error for a bad URL, said in one line
        raise UserError(f"--db {target}: cannot open the database: {exc}".splitlines()[0]) from None


def _write(text: str, dest: str) -> None:
    if dest == "-":
        sys.stdout.write(text)
        return
    try:
        Path(dest).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {dest}: {exc.strerror}") from None
    print(f"wrote {dest}", file=sys.stderr)


def summary(rep: dict[str, Any]) -> str:
    """The plain-text report printed when no format is asked for."""
    k = rep["kappa"]
    lines = [
        f"agreement report{' — ' + rep['meet'] if rep['meet'] else ''}: {rep['lifts']} attempts, "
        f"{rep['with_lights']} with official lights, {rep['pending']} awaiting them",
        "",
        f"{'':18}{'official good':>15}{'official no lift':>18}",
    ]
    for s in ("good", "no_lift", "undecided"):
        row = rep["confusion"][s]
        lines.append(f"{'system ' + s:18}{row['good']:>15}{row['no_lift']:>18}")
    lines.append("")
    if k["value"] is None:
        lines.append(f"Cohen's kappa: not defined (n = {k['n']})")
    elif k["ci95"] is None:
        lines.append(
            f"Cohen's kappa = {k['value']:.3f} (n = {k['n']}); no interval: one side gave one answer"
            " throughout, so its large-sample SE is not defined"
        )
    else:
        lines.append(
            f"Cohen's kappa = {k['value']:.3f}, 95% CI {k['ci95'][0]:.3f} to {k['ci95'][1]:.3f} "
            f"(SE {k['se']:.3f}, n = {k['n']}; undecided calls excluded)"
        )
    lines.append(f"disagreements: {len(rep['disagreements'])}")
    for d in rep["disagreements"]:
        who = f" {d['lifter']}" if d["lifter"] else ""
        lines.append(
            f"  lift {d['lift_id']}{who}: system {d['system']}, official {d['official']}  {d['replay']}"
        )
    return "\n".join(lines) + "\n"


def cmd_agreement(args: argparse.Namespace) -> int:
    from dashboard.agreement import report, report_csv, report_html

    store = _open_store(args.db)
    try:
        lifts = store.lifts(limit=1_000_000)
    finally:
        store.engine.dispose()
    if args.meet and not any(x["meet"] == args.meet for x in lifts):
        meets = sorted({x["meet"] for x in lifts})
        raise UserError(
            f"no lifts of meet {args.meet!r} in {args.db} (meets there: {', '.join(meets) or 'none'})"
        )
    rep = report(lifts, meet=args.meet, base_url=args.base_url)
    if args.json:
        _write(json.dumps(rep, indent=2) + "\n", args.json)
    elif args.csv:
        _write(report_csv(rep), args.csv)
    elif args.html:
        _write(report_html(rep, inline_css=True), args.html)
    else:
        sys.stdout.write(summary(rep))
    return 0
