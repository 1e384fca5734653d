"""``dlmark models [PATTERN]`` and ``dlmark suites``: what can be measured."""
from __future__ import annotations

import argparse
import fnmatch

from dlmark.errors import UserError

#: Libraries whose own registries ``dlmark models 'PREFIX:PATTERN'`` searches.
LIBRARIES = ("timm", "torchvision")


def register(commands) -> None:
    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("pattern", nargs="?", default="*",
                        help="shell-style pattern, e.g. 'ResNet*'; 'timm:vit*' or 'torchvision:res*' searches "
                             "that library's own models")
    models.set_defaults(handler=main)
    suites = commands.add_parser("suites", help="list shipped suites")
    suites.set_defaults(handler=list_suites)


def library_models(library: str, pattern: str) -> list[str]:
    """Classification networks of timm or torchvision whose names match ``pattern`` (case-insensitive)."""
    if library == "timm":
        import timm

        names = timm.list_models()
    else:
        import torchvision.models

        names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
    return [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]


def main(args: argparse.Namespace) -> int:
    from dlmark.models import zoo
    from dlmark.report.tables import format_table

    library, sep, pattern = args.pattern.partition(":")
    if sep and library.lower() in LIBRARIES:
        library = library.lower()
        names = library_models(library, pattern)
        if not names:
            raise UserError(f"no {library} model matches {pattern!r}; `dlmark models '{library}:*'` lists all of them")
        print("\n".join(f"{library}:{n}" for n in names))
        print(f"\n{len(names)} {library} model(s); measure one with: dlmark run --models {library}:{names[0]}")
        return 0
    if sep:
        raise UserError(f"dlmark models searches {', '.join(f'{x}:PATTERN' for x in LIBRARIES)} or the zoo's names; "
                        f"not {library}:")
    rows = [{"name": n, "source": zoo.REGISTRY[n].source_ref, "family": zoo.REGISTRY[n].family,
             "seed": "yes" if n in zoo.SEED_MODELS else ""} for n in zoo.list_models(args.pattern)]
    if not rows:
        # Only now the libraries are imported (seconds): to say where the pattern does match.
        found = [f"{lib} has {n} (dlmark models '{lib}:{args.pattern}')" for lib in LIBRARIES
                 if (n := len(library_models(lib, args.pattern)))]
        raise UserError(f"no model of dlmark's zoo matches {args.pattern!r}; "
                        + ("; ".join(found) if found else "nor does any timm or torchvision model"))
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
