"""``dlmark models [PATTERN]`` and ``dlmark suites``: what can be measured."""
from __future__ import annotations

import argparse

from dlmark.errors import UserError


def register(commands) -> None:
    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'ResNet*'")
    models.set_defaults(handler=main)
    suites = commands.add_parser("suites", help="list shipped suites")
    suites.set_defaults(handler=list_suites)


def main(args: argparse.Namespace) -> int:
    from dlmark.models import zoo
    from dlmark.report.tables import format_table

    rows = [{"name": n, "source": zoo.REGISTRY[n].source_ref, "family": zoo.REGISTRY[n].family,
             "seed": "yes" if n in zoo.SEED_MODELS else ""} for n in zoo.list_models(args.pattern)]
    if not rows:
        raise UserError(f"no registered model matches {args.pattern!r}; any torchvision:NAME or timm:NAME works too")
    print(format_table(rows, [("name", "name"), ("source", "source"), ("family", "family"), ("seed", "seed page")]))
    print("\nAny other network: torchvision:NAME, timm:NAME, or py:MODULE:FUNCTION")
    return 0


def list_suites(args: argparse.Namespace) -> int:
    from dlmark import suites
    from dlmark.report.tables import format_table

    rows = []
    for name in suites.available():
        s = suites.load(name)
        rows.append({"suite": name, "models": len(s.models), "tasks": ",".join(s.tasks),
                     "batch sizes": f"{min(s.batch_sizes)}..{max(s.batch_sizes)}", "about": s.description})
    print(format_table(rows, [(k, k) for k in ("suite", "models", "tasks", "batch sizes", "about")]))
    return 0
