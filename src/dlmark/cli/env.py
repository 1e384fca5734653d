"""``dlmark env create|list``: the separate environments of runtimes that need one (MXNet)."""
from __future__ import annotations

import argparse

from dlmark.errors import UserError


def register(commands) -> None:
    env = commands.add_parser("env", help="separate environments for runtimes that need one (mxnet)")
    env.add_argument("action", choices=("create", "list"), help="create an environment, or list them")
    env.add_argument("name", nargs="?", help="environment name (mxnet)")
    env.add_argument("--force", action="store_true", help="rebuild from scratch")
    env.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from dlmark.backends import envs
    from dlmark.report.tables import format_table

    if args.action == "list":
        print(format_table(envs.status(), [(k, k) for k in ("env", "ready", "python", "packages")]))
        return 0
    if not args.name:
        raise UserError(f"name the environment to create: {', '.join(envs.ENVS)}")
    envs.create(args.name, force=args.force)
    return 0
