"""Operator commands for consultant accounts.

    python -m services.store.admin add-user --login anna --name Anna --role consultant \\
        --organisation lastrada --lines 113 --password-stdin
    python -m services.store.admin add-user --login sasha --role specialist \\
        --organisation lastrada --lines 113 --specialist-roles social_worker --password-stdin
    python -m services.store.admin reset-password --login anna --password-stdin
    python -m services.store.admin disable-user --login anna
    python -m services.store.admin enable-user --login anna
    python -m services.store.admin reset-totp --login anna   # a lost second factor
    python -m services.store.admin seed-demo        # the demo accounts of the README
    python -m services.store.admin reseed --what directory   # the YAML's directory replaces the database's
    python -m services.store.admin seed-demo-statistics   # a sample year for the reports (demo only)

Reads STORE_MONGO_URL and STORE_MONGO_DATABASE like the store itself. A new password is read
from standard input (``--password-stdin``) or asked for without echo, never taken from the
command line (it would be visible to every user of the machine). Resetting a password or
disabling a user ends all of their sessions at once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversations import reference
from conversations.identity import new_id
from conversations.repository import Repository
from services.store.administration import CHANGES
from services.store.auth import NATIONAL_ADMIN, ROLES, hash_password
from services.store.demo_data import seed_sample_year
from services.store.shift import Shift
from shared.config import load_config
from shared.envelope import utcnow
from shared.mongo import make_client
from shared.settings import DEFAULT_CONFIG_PATH

# Demo only (README): password = login + "-demo".
DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {"_id": "anna", "name": "Anna", "role": "consultant", "organisation": "lastrada", "lines": ["113"]},
    {"_id": "boris", "name": "Boris", "role": "consultant", "organisation": "bwc", "lines": ["113"]},
    {"_id": "vera", "name": "Vera", "role": "consultant", "organisation": "gp", "lines": ["dv"]},
    # Supervisors see their organisation's work; sofia, the national administrator, every one's.
    {"_id": "larisa", "name": "Larisa", "role": "supervisor", "organisation": "lastrada", "lines": ["113"]},
    {"_id": "bogdan", "name": "Bogdan", "role": "supervisor", "organisation": "bwc", "lines": ["113"]},
    {"_id": "sofia", "name": "Sofia", "role": NATIONAL_ADMIN, "organisation": None, "lines": ["113", "dv"]},
    # Specialists take the cases referred to the roles they fill (docs/cases.md).
    {"_id": "sasha", "name": "Sasha", "role": "specialist", "organisation": "lastrada", "lines": ["113"],
     "specialist_roles": ["social_worker", "infoline_manager"]},
    {"_id": "kira", "name": "Kira", "role": "specialist", "organisation": "bwc", "lines": ["113"],
     "specialist_roles": ["social_worker", "infoline_manager"]},
    {"_id": "dina", "name": "Dina", "role": "specialist", "organisation": "gp", "lines": ["dv"],
     "specialist_roles": ["social_worker", "psychologist"]},
]  # fmt: skip


def demo_account_docs() -> list[dict[str, Any]]:
    """The demo accounts as ``seed-demo`` stores them, each password hashed (password: login +
    ``-demo``)."""
    return [
        {**a, "password_hash": hash_password(f"{a['_id']}-demo"), "disabled": False, "status": "offline"}
        for a in DEMO_ACCOUNTS
    ]


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", extra="ignore")
    mongo_url: SecretStr = Field(description="MongoDB URL")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")
    config_path: Path = Field(
        default=DEFAULT_CONFIG_PATH, description="Hotline configuration (YAML): lines, queues, case form"
    )


async def _run(args: argparse.Namespace, settings: AdminSettings) -> str:
    client = make_client(settings.mongo_url.get_secret_value())
    try:
        repo = Repository(client[settings.mongo_database])
        await repo.ensure_indexes()
        if args.command == "seed-demo":
            for account in demo_account_docs():
                await repo.upsert_consultant(account)
            return "demo accounts: " + ", ".join(str(a["_id"]) for a in DEMO_ACCOUNTS)
        if args.command == "reseed":
            # Canned answers and the directory live in the database once seeded (the store
            # seeds them at its first start); this puts the YAML's back, replacing every edit.
            written = await reference.reseed(repo.db, load_config(settings.config_path), args.what)
            await repo.db[CHANGES].insert_one(
                {
                    "_id": new_id(),
                    "at": utcnow(),
                    "by": "admin-command",
                    "kind": args.what,
                    "target": "*",
                    "action": "reseeded",
                }
            )
            return f"{args.what}: {written} entries from the configuration file replace the database's"
        if args.command == "seed-demo-statistics":
            added = await seed_sample_year(repo, load_config(settings.config_path), utcnow())
            return f"demo statistics: {added} sample contacts since 1 January last year added (demo data)"
        if args.command in {"add-user", "reset-password"}:
            password = (
                sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
            )
            if len(password) < 10:
                raise SystemExit("a password has at least 10 characters")
        if args.command == "reset-password":
            res = await repo.consultants.update_one(
                {"_id": args.login}, {"$set": {"password_hash": hash_password(password)}}
            )
            if res.matched_count == 0:
                raise SystemExit(f"no user {args.login}")
            await repo.sessions.delete_many({"login": args.login})
            return f"password of {args.login} reset; their sessions ended"
        if args.command == "reset-totp":
            # A lost phone: the second factor and its recovery codes go, her sessions end; her
            # next log-in enrols again where one is required (services/store/totp.py).
            res = await repo.consultants.update_one(
                {"_id": args.login}, {"$unset": {"totp": "", "totp_enrolling": ""}}
            )
            if res.matched_count == 0:
                raise SystemExit(f"no user {args.login}")
            await repo.sessions.delete_many({"login": args.login})
            return f"second factor of {args.login} reset; their sessions ended; they enrol again at log-in"
        if args.command == "enable-user":
            res = await repo.consultants.update_one({"_id": args.login}, {"$set": {"disabled": False}})
            if res.matched_count == 0:
                raise SystemExit(f"no user {args.login}")
            return f"user {args.login} enabled"
        if args.command == "add-user":
            if args.role != NATIONAL_ADMIN and not args.organisation:
                raise SystemExit(
                    f"a {args.role} belongs to an organisation: give --organisation "
                    f"(a person who sees every organisation is a {NATIONAL_ADMIN})"
                )
            if args.role == NATIONAL_ADMIN and args.organisation:
                raise SystemExit(f"a {NATIONAL_ADMIN} sees every organisation: omit --organisation")
            roles = [r for r in (args.specialist_roles or "").split(",") if r]
            if roles and args.role != "specialist":
                raise SystemExit("--specialist-roles is for a specialist")
            if args.role == "specialist":
                known = load_config(settings.config_path).cases.referral_roles
                if not roles or not set(roles) <= set(known):
                    raise SystemExit(
                        "a specialist fills referral roles: give --specialist-roles, of " + ", ".join(known)
                    )
            await repo.upsert_consultant(
                {
                    "_id": args.login,
                    "name": args.name or args.login,
                    "role": args.role,
                    "organisation": args.organisation,
                    "lines": args.lines.split(","),
                    "specialist_roles": roles,
                    "password_hash": hash_password(password),
                    "disabled": False,
                    "status": "offline",
                }
            )
            return f"user {args.login} saved"
        res = await repo.consultants.update_one({"_id": args.login}, {"$set": {"disabled": True}})
        await repo.sessions.delete_many({"login": args.login})
        if res.matched_count == 0:
            raise SystemExit(f"no user {args.login}")
        # As the API's disable does, by the same code path (services/store/shift.py): nobody is
        # left waiting for a person who can no longer log in. Their threads go back to their
        # queues; with no broker here, the store's next shift pass announces them to consoles.
        released = await Shift(repo, None).leave(args.login, "disabled", "admin-command") or []
        return f"user {args.login} disabled; {len(released)} thread(s) back in their queues"
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.store.admin")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="add a user or reset their password")
    add.add_argument("--login", required=True)
    add.add_argument("--name")
    add.add_argument("--role", choices=ROLES, default="consultant")
    add.add_argument("--organisation", help=f"the person's organisation (omit for a {NATIONAL_ADMIN} only)")
    add.add_argument("--lines", required=True, help="comma-separated line ids, e.g. 113,dv")
    add.add_argument(
        "--specialist-roles", help="a specialist's referral roles, comma-separated, e.g. social_worker,lawyer"
    )
    add.add_argument("--password-stdin", action="store_true")
    reset = sub.add_parser("reset-password", help="set a new password and end the user's sessions")
    reset.add_argument("--login", required=True)
    reset.add_argument("--password-stdin", action="store_true")
    disable = sub.add_parser("disable-user", help="disable a user and end their sessions")
    disable.add_argument("--login", required=True)
    enable = sub.add_parser("enable-user", help="let a disabled user log in again")
    enable.add_argument("--login", required=True)
    reseed = sub.add_parser(
        "reseed", help="replace the database's canned answers or directory with the configuration file's"
    )
    reseed.add_argument("--what", choices=reference.KINDS, required=True)
    totp = sub.add_parser(
        "reset-totp", help="remove a user's second factor (a lost phone) and end their sessions"
    )
    totp.add_argument("--login", required=True)
    sub.add_parser("seed-demo", help="create the demo accounts (demo only)")
    sub.add_parser(
        "seed-demo-statistics", help="write a sample year of closed consultations for the reports (demo only)"
    )
    args = parser.parse_args(argv)
    print(asyncio.run(_run(args, AdminSettings())))


if __name__ == "__main__":
    main()
