"""The package's shape: the import graph has no cycle, data flows one way, and the
commands and readers import nothing heavy they do not need."""
import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    """Module -> the dlmark modules it imports (at module level unless ``top_level_only`` is False),
    read from the source with ast, so a cycle hidden behind a lazy import at run time is still
    seen when asked for."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        edges = graph.setdefault(name, set())
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    edges.add(full if (SRC / (full.replace(".", "/") + ".py")).exists()
                              or (SRC / full.replace(".", "/")).is_dir() else target)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
    return graph


def _cycles(graph):
    dlmark = {m: {e for e in edges if e.startswith("dlmark")} for m, edges in graph.items()}
    seen, stack, found = set(), [], []

    def visit(node):
        if node in stack:
            found.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(dlmark.get(node, ())):
            # importing a.b.c first imports the packages a and a.b
            visit(nxt)
        stack.pop()

    for module in sorted(dlmark):
        visit(module)
    return found


def test_module_level_imports_have_no_cycle():
    assert _cycles(import_graph()) == []


def test_no_cycle_even_through_imports_inside_functions():
    # A lazy import keeps start-up light, not the data flow one way: inputs.samples once reached
    # tasks.accuracy, which reached run.options, which imported inputs.samples.
    assert _cycles(import_graph(top_level_only=False)) == []


def test_backends_never_import_tasks_and_readers_never_import_torch():
    graph = import_graph(top_level_only=False)  # lazy imports inside functions count too
    for module, edges in graph.items():
        if module.startswith("dlmark.backends"):
            assert not any(e.startswith("dlmark.tasks") or e.startswith("dlmark.run") for e in edges), module
        if module.startswith(("dlmark.records", "dlmark.analysis", "dlmark.report")) or module == "dlmark.plot":
            assert not any(e == "torch" or e.startswith("torch.") for e in edges), module


def test_the_graph_reader_sees_a_planted_cycle(tmp_path):
    graph = {"dlmark.a": {"dlmark.b"}, "dlmark.b": {"dlmark.c"}, "dlmark.c": {"dlmark.a"}, "dlmark.d": {"os"}}
    assert _cycles(graph) == [["dlmark.a", "dlmark.b", "dlmark.c", "dlmark.a"]]


def _imported_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         check=True, capture_output=True, text=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_the_cli_and_help_import_no_torch_pandas_or_bokeh():
    for code in ("import dlmark.cli",
                 "import dlmark.cli, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
                 "    try: dlmark.cli.main(['--help'])\n    except SystemExit: pass",
                 "import dlmark, dlmark.benchmark, dlmark.run.driver, dlmark.run.plan"):
        heavy = _imported_by(code) & {"torch", "pandas", "bokeh"}
        assert not heavy, f"{code!r} imported {heavy}"


def test_loading_results_does_not_import_torch(tmp_path):
    modules = _imported_by(f"import dlmark\ndlmark.benchmark.load_results({str(tmp_path / '*.json')!r})")
    assert "torch" not in modules and "pandas" in modules
