"""``meetvar users …``: accounts of the dashboard, from the command line.

This is how the first organizer comes to exist on a real meet — there is no default account or
password: ``meetvar users add --role organizer NAME --db FILE`` asks for the password (or reads one
line from standard input when it is not a terminal). Everything else the organizer does in the page.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from meetvar.errors import UserError
from meetvar.settings import env_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from dashboard.auth import ROLES

    users = sub.add_parser("users", help="dashboard accounts: add, list, disable, one-time login link")
    users_sub = users.add_subparsers(dest="users_command", required=True)

    add = users_sub.add_parser(
        "add", help="add an account; the password is prompted for (or read from stdin)"
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--lifter", help="for a lifter or coach account: the lifter's name as the meet has it")
    env_option(
        add,
        "--db",
        env="MEETVAR_DB",
        required=True,
        help="the dashboard's database (SQLite file or SQLAlchemy URL)",
    )
    add.set_defaults(func=cmd_users_add)

    ls = users_sub.add_parser("list", help="list active accounts")
    env_option(ls, "--db", env="MEETVAR_DB", required=True, help="the dashboard's database")
    ls.set_defaults(func=cmd_users_list)

    dis = users_sub.add_parser("disable", help="disable an account and end its sessions")
    dis.add_argument("name")
    env_option(dis, "--db", env="MEETVAR_DB", required=True, help="the dashboard's database")
    dis.set_defaults(func=cmd_users_disable)

    link = users_sub.add_parser("login-link", help="print a one-time login link for an account (valid 1 h)")
    link.add_argument("name")
    env_option(link, "--db", env="MEETVAR_DB", required=True, help="the dashboard's database")
    env_option(
        link,
        "--url",
        env="MEETVAR_PUBLIC_URL",
        default="http://127.0.0.1:8000",
        help="the dashboard's address",
    )
    link.set_defaults(func=cmd_users_login_link)


def _auth(db: str):  # type: ignore[no-untyped-def]
    from dashboard.auth import Auth
    from dashboard.db import make_engine

    return Auth(make_engine(db))


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise UserError("no password on standard input")
    return line.rstrip("\r\n")


def cmd_users_add(args: argparse.Namespace) -> int:
    from dashboard.audit import AuditLog
    from dashboard.auth import AuthError

    auth = _auth(args.db)
    try:
        user = auth.create_user(args.name, args.role, _read_password(), args.lifter)
    except AuthError as exc:
        raise UserError(str(exc)) from exc
    AuditLog(auth.engine).append(
        getpass.getuser(),
        "shell",
        "user_created",
        f"user/{user.name}",
        {"role": user.role, "via": "meetvar users add"},
    )
    print(f"added {user.role} {user.name}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    for user in _auth(args.db).users():
        print(f"{user.name}\t{user.role}\t{user.lifter or ''}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    from dashboard.audit import AuditLog
    from dashboard.auth import AuthError

    auth = _auth(args.db)
    try:
        auth.set_active(args.name, False)
    except AuthError as exc:
        raise UserError(str(exc)) from exc
    AuditLog(auth.engine).append(getpass.getuser(), "shell", "user_disabled", f"user/{args.name}")
    print(f"disabled {args.name}")
    return 0


def cmd_users_login_link(args: argparse.Namespace) -> int:
    from dashboard.audit import AuditLog

    auth = _auth(args.db)
    user = auth.user_by_name(args.name)
    if user is None:
        raise UserError(f"no user {args.name!r}")
    token = auth.issue_login_token(user)
    AuditLog(auth.engine).append(getpass.getuser(), "shell", "login_link_issued", f"user/{user.name}")
    print(f"{args.url.rstrip('/')}/#login={token}")
    return 0
