"""Every command README.md and docs/*.md tell a user to run, run with small settings (issue 18).

The commands are read from the pages themselves: each line of a code block fenced
as ``sh``, ``bash`` or ``shell``, and each line of an indented or plainly fenced
block (which may hold output too) that starts with a program a user runs
(``dlmark``, ``make``, ``pip``, ``python``, after any ``NAME=value``); a line ending
in ``\\`` continues on the next. README's
``python`` blocks run too, in a folder of committed records.

Each command is in exactly one of two tables, keyed by its text (less its trailing
comment): ``SMALL``, how it runs here (the options it sets are the small settings:
fewer models, batches or trials, a shorter time; the other options and the command
itself stay as documented), or ``SKIPPED``, why it cannot run on a CPU-only test
machine (a GPU, a Ray cluster, ImageNet, the network). A new command on a page that
is in neither table fails ``test_every_documented_command_is_run_or_skipped``, so a
page cannot gain a command that nothing runs.

Rules every run command follows, so nothing is written into the clone:
``-o``/``--output`` files go to the test's folder (same file name), results folders
``runs``, ``runs/...`` are the test's ``runs`` folder (``dlmark run`` without
``--out`` writes to ``runs/`` in the clone's root, so it gets ``--out`` that folder),
``> FILE`` goes to the test's folder. ``make`` runs as ``make -n`` (what it would do:
installing into ``.venv`` is what it does; ``make test`` would run this test again).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
PROGRAMS = ("dlmark", "make", "pip", "python")
SHELL_FENCES = ("sh", "bash", "shell")  # every line a command; a plain fence may hold output
QUICK = {"--min-time": "0.05"}  # seconds of timed blocks per job: the suites' 0.5-1 s is for figures, not a test
# A two-layer CNN that every runtime exports, converts and quantizes in seconds, for the runtime pages.
TINY = {"--models": "py:tests.fixtures.runtime_models:tiny"}


@dataclass(frozen=True)
class Small:
    """How a documented command runs here."""
    options: dict[str, str | None] = field(default_factory=dict)  # set (or add) FLAG VALUE; None: add the bare flag
    paths: dict[str, str] = field(default_factory=dict)  # a documented path argument -> the committed folder read
    needs: tuple[str, ...] = ()  # optional packages or programs, else the command is reported as not run here
    exit_codes: tuple[int, ...] = (0,)
    expect: str = ""  # text its standard output must hold
    expect_err: str = ""  # text its standard error (the progress lines) must hold


# Folders of committed records the read-only examples read in place of a user's own runs.
CPU_A, CPU_B = "results/cpu-runtimes-2t", "results/cpu-runtimes-2t-quiet"  # the same CPU runtimes, twice

SMALL: dict[str, Small] = {
    # README.md
    "make run": Small(expect="dlmark run quick --out runs"),
    "make test": Small(expect="pytest"),
    "dlmark run quick --device cpu --models ResNet-v1-18,timm:convnext_atto --batch-sizes 1:32":
        Small({"--batch-sizes": "1", **QUICK}, expect="timm:convnext_atto"),
    "dlmark run cnn --task max-batch-size --device cpu --memory-limit 2GiB --models AlexNet":
        Small({"--max-batch-cap": "4"}, expect="AlexNet", expect_err="trial batch 4: ok"),  # stops at the cap
    "dlmark ls runs/ --model ResNet-v1-18": Small(expect="ResNet-v1-18"),  # measured above (and by make run)
    "dlmark models 'ResNet*'": Small(expect="ResNet-v1-50"),
    "dlmark suites": Small(expect="quick"),
    **{f"dlmark plot {kind} {folder} {rest} --scale 2 -o docs/img/{png}": Small(needs=("selenium", "chromedriver"))
       for kind, folder, rest, png in [
           ("batch-size-vs-throughput", "results/h200", "--model ResNet-v1-50", "h200_resnet50_throughput.png"),
           ("batch-size-vs-memory", "results/h200", "--model ResNet-v1-50 --precision fp32", "h200_resnet50_memory.png"),
           ("roofline", "results/h200-cnn-sweep-2", "--model 'AlexNet,SqueezeNet-1.1,ResNet-v1-50,DenseNet-121'",
            "h200_cnn_roofline.png")]},
    "dlmark plot latency-vs-load results/h200-serving-24 --scale 2 -o docs/img/h200_resnet50_latency_vs_load.png":
        Small(needs=("selenium", "chromedriver")),
    # docs/compare.md: two folders of committed records stand for the user's two runs
    "dlmark report runs/pr --baseline runs/main -o site":
        Small(paths={"runs/pr": CPU_B, "runs/main": CPU_A}, expect="comparison with"),
    # docs/results-at-scale.md: ls's filters and sorts on a committed folder
    'dlmark ls runs/ --task throughput --device "NVIDIA H200"': Small(paths={"runs/": "results/h200-cnn-sweep-2"},
                                                                    expect="NVIDIA H200"),
    'dlmark ls runs/ --where env.torch=2.9.1 --where "batch_size>=64"':
        Small(paths={"runs/": "results/h200-cnn-sweep-2"}),
    'dlmark ls runs/ --where "mfu>0.3" --sort=-mfu --limit 20': Small(paths={"runs/": "results/h200-cnn-sweep-2"}),
    "dlmark ls runs/ --sort model,-throughput": Small(paths={"runs/": "results/h200-cnn-sweep-2"}, expect="AlexNet"),
    "dlmark compare runs/main runs/my-branch": Small(paths={"runs/main": CPU_A, "runs/my-branch": CPU_B}, expect="pairs"),
    "dlmark compare runs/torch-2.10 runs/torch-2.11 --axis env.torch":
        Small(paths={"runs/torch-2.10": CPU_A, "runs/torch-2.11": CPU_B}, expect="pairs"),
    "dlmark compare runs/h100 runs/h200 --axis device":
        Small(paths={"runs/h100": "results/h200", "runs/h200": "results/h200-cnn-sweep-2"}, expect="pairs"),
    "dlmark compare runs/rt runs/rt --axis backend": Small(paths={"runs/rt": CPU_A}, expect="pairs"),
    "dlmark compare runs/main runs/pr --format md > comment.md": Small(paths={"runs/main": CPU_A, "runs/pr": CPU_B}),
    "dlmark compare runs/main runs/pr --format json": Small(paths={"runs/main": CPU_A, "runs/pr": CPU_B},
                                                            expect='"pairs"'),
    "dlmark compare runs/main runs/pr --fail-on-slower 5%":
        Small(paths={"runs/main": CPU_A, "runs/pr": CPU_B}, exit_codes=(0, 1)),  # 1: the gate found a slowdown
    # The CI gate's pair: the baseline is measured on the same machine (a committed folder from another
    # CPU shares no configuration), here the page's own runs/main of "Across runs".
    "dlmark run quick --device cpu --out runs/pr": Small({**TINY, "--batch-sizes": "1", **QUICK}),
    # docs/compare.md "Across runs": the two runs are made here, then compared across their repetitions
    "dlmark run quick --repetitions 3 --out runs/main": Small({**TINY, "--batch-sizes": "1", **QUICK}),
    "dlmark run quick --repetitions 3 --out runs/pr": Small({**TINY, "--batch-sizes": "1", **QUICK}),
    "dlmark compare runs/main runs/pr": Small(exit_codes=(0,), expect="judged across runs (3 vs 3"),
    "dlmark compare baseline-results runs/pr --format md --fail-on-slower 5% > comment.md":
        Small(paths={"baseline-results": "runs/main"}, exit_codes=(0, 1)),
    # docs/int8.md
    "dlmark run quick --device cpu --models SqueezeNet-1.1 --batch-sizes 1,32 --backend pytorch,onnxruntime,openvino "
    "--precision fp32,int8 --out runs/int8": Small({**TINY, "--batch-sizes": "1", **QUICK}, needs=("onnxruntime", "openvino")),
    "dlmark run quick --device cpu --models SqueezeNet-1.1 --batch-sizes 1,32 --task throughput "
    "--backend openvino-throughput --in-flight 1,auto --out runs/in-flight":
        Small({**TINY, "--batch-sizes": "1", **QUICK}, needs=("openvino",)),
    # docs/pipeline.md
    "dlmark run --models ResNet-v1-18 --input images --batch-sizes 8,32 --pipeline-workers 0,1,2 --device cpu":
        # The tiny CNN at batch 1 on 8 JPEGs: every stage (decode, transform, loader, model, end to end) is timed
        # twice over, each a batch a step, so SqueezeNet at batch 8 on 16 images took three times as long.
        Small({"--models": "py:tests.fixtures.models:tiny", "--batch-sizes": "1", "--pipeline-workers": "0",
               "--images": "8", **QUICK},
              expect="bound by"),
    # docs/report.md
    "dlmark report RESULTS_DIR -o SITE_DIR": Small(paths={"RESULTS_DIR": "results/h200-serving-2"}, expect="wrote"),
    # docs/runtimes.md
    "dlmark run quick --device cpu --models ResNet-v1-50 --batch-sizes 1,32 --backend pytorch,onnxruntime,openvino,mxnet "
    "--threads 2 --out runs/rt": Small({"--models": "SqueezeNet-1.1", "--batch-sizes": "1", **QUICK},  # MXNet: zoo nets only
                                       needs=("onnxruntime", "openvino", "mxnet-env")),
    "dlmark ls runs/rt": Small(paths={"runs/rt": CPU_A}, expect="agrees"),
    "dlmark ls runs/rt --compare": Small(paths={"runs/rt": CPU_A}, expect="x pytorch eager"),
    "dlmark env list": Small(expect="mxnet"),
    # docs/serving.md
    "dlmark ls runs --scenario server": Small(paths={"runs": "results/h200-serving-2"}, expect="Server QPS"),
    "dlmark plot latency-vs-load runs -o lat.html": Small(paths={"runs": "results/h200-serving-2"}),
    "dlmark run --models ResNet-v1-18 --device cpu --scenario single-stream,offline --input images --images 32 "
    "--batch-sizes 8": Small({"--models": "py:tests.fixtures.models:tiny_images", "--images": "8",  # ResNet-18 on
                              "--serving-min-time": "1"}, expect="images (pil)"),  # 2 CPU cores: minutes of queries
    "dlmark ls runs --scenario offline,single-stream": Small(paths={"runs": "results/h200-serving-2"}, expect="samples"),
}

GPU = "needs a CUDA GPU"
RAY = "starts or joins a Ray cluster (tests/run/test_ray.py runs the CPU path on a local instance)"
NETWORK = "installs from the network"
IMAGENET = "needs ImageNet's validation images (tests/tasks/test_accuracy.py runs int8 accuracy on a made folder)"
PLACEHOLDER_RUNS = "run ids of the page's example (tests/cli/test_compare_cli.py compares two runs of one folder)"
SKIPPED: dict[str, str] = {
    "dlmark run cnn --device cuda --precision fp32,bf16": GPU,
    # docs/compare.md
    "dlmark compare runs@3f2a9c1b0d4e runs@8be1": PLACEHOLDER_RUNS,
    "dlmark report runs@8be1 --baseline runs@3f2a -o site --axis env.torch --threshold 5%": PLACEHOLDER_RUNS,
    # docs/int8.md
    "dlmark run cnn --device cpu --models ResNet-v1-50 --precision fp32,int8 --backend pytorch,onnxruntime,openvino "
    "--task throughput,accuracy --imagenet ~/data/imagenet/val --calibration-samples 300 --limit 5000 "
    "--out runs/int8-acc": IMAGENET,
    "dlmark pareto runs/int8-acc --device cpu": "reads the ImageNet run above it",
    "dlmark plot throughput-vs-accuracy runs/int8-acc -o int8-accuracy.html": "reads the ImageNet run above it",
    "dlmark run quick --device cpu --models SqueezeNet-1.1 --precision int8 --backend onnxruntime --task throughput "
    "--imagenet ~/data/imagenet/val --out runs/int8": IMAGENET,
    # docs/accuracy.md
    "dlmark run cnn --task accuracy --device cuda --out runs": GPU,
    "dlmark run cnn --task accuracy --imagenet /data/imagenet/val --device cuda --out runs": GPU + " and ImageNet",
    "dlmark run cnn --task accuracy --imagenet /data/imagenet --limit 2000 --device cuda --out runs":
        GPU + " and ImageNet",
    "dlmark run cnn --task throughput --batch-sizes 64 --device cuda --out runs": GPU,
    "dlmark pareto runs --device H200 --min-accuracy 76": "reads the two H200 runs above it (no committed folder "
                                                         "holds accuracy records)",
    # docs/gpu.md
    "dlmark tune ResNet-v1-50 --device cuda:0 --out runs --budget-s 420": GPU,
    "dlmark peak --device cuda:0 --out runs": GPU,
    # docs/pipeline.md
    "dlmark run --models ResNet-v1-50 --input images:/data/imagenet/val --decoder nvjpeg --device cuda":
        GPU + " and ImageNet",
    "dlmark run --task throughput --input images ...": "a pattern: `...` stands for the other options",
    "PYTHONPATH=src python scripts/pipeline_table.py --out runs/pipeline-cpu.json":
        "how the page's table was measured (minutes of timing on an idle machine), not a step for the reader",
    "PYTHONPATH=src python scripts/pipeline_table.py --out results/cpu-tables-1/pipeline --threads 2":
        "how the page's idle-machine table was measured (6 minutes of timing), not a step for the reader",
    # docs/report.md
    "PYTHONPATH=src python scripts/report_bench.py --sizes 2000,20000,150000":
        "how the page's scale table was measured (synthetic folders of up to 150,000 records, an hour)",
    "python scripts/report_bench.py --src /path/to/other/checkout/src --sizes 2000":
        "the same against another checkout (a placeholder path)",
    # docs/plots.md
    "dlmark plot KIND RESULTS -o FILE.png|FILE.html [--model M] [--device D] [--precision P] [--scale S]":
        "a synopsis; README's four `dlmark plot` commands run it",
    # docs/runtimes.md
    "dlmark env create mxnet": NETWORK + " (pip install mxnet into a new virtual environment)",
    # docs/scale-out.md
    "dlmark run cnn --device cuda:all --out runs": GPU,
    "dlmark run cnn --device cuda:0,cuda:2 --out runs": GPU + "s (three)",
    "pip install -e '.[ray]'": NETWORK,
    "dlmark run cnn --executor ray --out runs": RAY + "; " + GPU,
    "dlmark run cnn --executor ray --ray-address auto --out runs": RAY,
    "dlmark run cnn --executor ray --accelerator-type H100 --out runs": RAY + " with H100s",
    "dlmark run cnn --executor ray --device cpu --out runs": RAY,
    "dlmark run cnn --executor ray --ray-address auto --each-accelerator [--include-cpu] --out runs": RAY,
    # docs/serving.md
    "pip install -e '.[serving]'": NETWORK,
    "dlmark run --models ResNet-v1-50 --device cuda --scenario offline,single-stream,multi-stream,server "
    "--latency-bound-ms 15 --max-batch 8 --pad-batches": GPU,
    "dlmark run ... --scenario server --target-qps 1200": "a pattern: `...` stands for the GPU command above",
    "dlmark run ... --scenario offline --batch-sizes 64,256": "a pattern: `...` stands for the GPU command above",
    "dlmark run --models ResNet-v1-50 --device cuda --scenario offline,server --latency-bound-ms 15 "
    "--input images:/data/imagenet/val": GPU + " and ImageNet",
}


# ------------------------------------------------------------------ reading the pages


@dataclass(frozen=True)
class Documented:
    page: str
    line: int
    text: str  # as written, continuation lines joined, the trailing comment left out

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _uncommented(line: str) -> str:
    """The line less a shell comment (`` #`` outside quotes), spaces collapsed."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            line = line[:i]
            break
    return " ".join(line.split())


def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line number, text) with continuation lines (a trailing backslash) joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in lines:
        if pending:
            number, text = pending[0], pending[1] + " " + text.strip()
        if text.rstrip().endswith("\\"):
            pending = (number, text.rstrip()[:-1])
        else:
            pending = None
            out.append((number, text))
    return out


def _runs_a_program(line: str) -> bool:
    words = [w for w in line.split() if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)]  # PYTHONPATH=src python ...
    return bool(words) and words[0] in PROGRAMS


def shell_commands(page: str, text: str) -> list[Documented]:
    """The commands of a page, in order (see the module docstring for what counts)."""
    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    fence: str | None = None  # the language of the open fenced block
    block: list[tuple[int, str]] = []
    indented: list[tuple[int, str]] = []
    previous_blank = True
    for number, line in enumerate(lines, 1):
        if fence is None and line.startswith("```"):
            fence, block = line[3:].strip(), []
            continue
        if fence is not None:
            if line.startswith("```"):
                if fence in SHELL_FENCES:
                    found += [(n, t) for n, t in _joined(block) if _uncommented(t)]
                elif not fence:
                    found += [(n, t) for n, t in _joined(block) if _runs_a_program(t)]
                fence = None
            else:
                block.append((number, line))
            continue
        if line.startswith("    ") and (indented or previous_blank):
            indented.append((number, line))
        else:
            found += [(n, t) for n, t in _joined(indented) if _runs_a_program(t)]
            indented = []
        previous_blank = not line.strip()
    found += [(n, t) for n, t in _joined(indented) if _runs_a_program(t)]
    return [Documented(page, n, _uncommented(t)) for n, t in sorted(found)]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def documented() -> list[Documented]:
    return [c for page in PAGES for c in shell_commands(page, (ROOT / page).read_text())]


# ------------------------------------------------------------------ running one


def _available(need: str) -> bool:
    if need == "chromedriver":
        return shutil.which("chromedriver") is not None
    if need == "mxnet-env":
        from dlmark.backends import envs

        return any(row.get("env") == "mxnet" and row.get("ready") in (True, "yes") for row in envs.status())
    return importlib.util.find_spec(need) is not None


def _set_option(tokens: list[str], flag: str, value: str | None) -> None:
    if flag in tokens:
        if value is not None:
            tokens[tokens.index(flag) + 1] = value
    else:
        tokens += [flag] if value is None else [flag, value]


def small_argv(command: str, small: Small, tmp: Path) -> tuple[list[str], Path | None]:
    """The command's argv as run here, and the file its standard output is redirected to (or None)."""
    tokens = shlex.split(command, comments=True)
    redirect = None
    if ">" in tokens:
        at = tokens.index(">")
        redirect, tokens = tmp / Path(tokens[at + 1]).name, tokens[:at]
    for flag, value in small.options.items():
        _set_option(tokens, flag, value)
    runs = tmp / "runs"
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else ""
        if token in small.paths:
            target = small.paths[token]  # a committed folder, or one an earlier command of the page made
            tokens[i] = str(runs / target.removeprefix("runs/") if target.startswith("runs/") else ROOT / target)
        elif previous in ("-o", "--output"):
            tokens[i] = str(tmp / Path(token).name)
        elif token == "runs" or token.startswith("runs/"):
            tokens[i] = str(runs / token.removeprefix("runs").strip("/"))
    program, *args = tokens
    if program == "dlmark":
        if args and args[0] in ("run", "tune", "peak") and "--out" not in args:
            args += ["--out", str(runs)]  # where `runs/` in the clone would be
        return [sys.executable, "-m", "dlmark.cli", *args], redirect
    if program == "make":
        return ["make", "-n", *args], redirect
    if program == "python":
        return [sys.executable, *args], redirect
    raise AssertionError(f"no way to run {program!r} here: list the command in SKIPPED with the reason")


def run_page(page: str, tmp: Path) -> tuple[list[str], list[str]]:
    """Run a page's commands in order: (failures, commands not run here for want of a package)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    failures, not_run = [], []
    began = time.monotonic()
    for command in shell_commands(page, (ROOT / page).read_text()):
        if command.text in SKIPPED:
            continue
        small = SMALL[command.text]
        missing = [n for n in small.needs if not _available(n)]
        if missing:
            not_run.append(f"{command} (needs {', '.join(missing)})")
            continue
        argv, redirect = small_argv(command.text, small, tmp)
        out = open(redirect, "w") if redirect else subprocess.PIPE
        try:
            done = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            if redirect:
                out.close()
        stdout = redirect.read_text() if redirect else done.stdout
        print(f"{time.monotonic() - began:6.1f} s  {command}")  # pytest -s: where a page's time goes
        if (done.returncode not in small.exit_codes or "Traceback" in done.stderr or small.expect not in stdout
                or small.expect_err not in done.stderr):
            failures.append(f"{command}\n  ran: {shlex.join(argv)}\n  exit {done.returncode}; "
                            f"stdout ends: {stdout[-600:]!r}\n  stderr ends: {done.stderr[-1500:]!r}")
    return failures, not_run


# ------------------------------------------------------------------ the tests


def test_the_reader_finds_fenced_indented_and_continued_commands():
    text = ("intro\n\n```sh\ndlmark a   # comment\nmake b\n```\n\n```python\nx = 1\n```\n\n"
            "```\nwarning: output\nX=1 python s.py\n```\n"
            "    dlmark c \\\n        --flag 'v # w'   # note\n    not a command\n\n"
            "- a list\n\n    prose that is indented\n\n```toml\nname = 1\n```\n")
    assert [(c.line, c.text) for c in shell_commands("p.md", text)] == [
        (4, "dlmark a"), (5, "make b"), (14, "X=1 python s.py"), (16, "dlmark c --flag 'v # w'")]
    assert python_blocks(text) == ["x = 1\n"]


def test_small_settings_change_options_and_paths_only(tmp_path):
    argv, redirect = small_argv("dlmark compare runs/main runs/pr --format md > comment.md",
                                Small(paths={"runs/main": CPU_A}), tmp_path)
    assert argv[3:] == ["compare", str(ROOT / CPU_A), str(tmp_path / "runs" / "pr"), "--format", "md"]
    assert redirect == tmp_path / "comment.md"
    argv, _ = small_argv("dlmark run quick --batch-sizes 1:32", Small({"--batch-sizes": "1", "--min-time": "0.05"}),
                         tmp_path)
    assert argv[3:] == ["run", "quick", "--batch-sizes", "1", "--min-time", "0.05", "--out", str(tmp_path / "runs")]
    argv, _ = small_argv("dlmark plot roofline results/h200 -o docs/img/x.png", Small(), tmp_path)
    assert argv[-2:] == ["-o", str(tmp_path / "x.png")]


def test_every_documented_command_is_run_or_skipped():
    commands = documented()
    assert any(c.page == "README.md" for c in commands) and len(commands) > 30
    both = sorted(set(SMALL) & set(SKIPPED))
    assert not both, f"both run and skipped: {both}"
    neither = [str(c) for c in commands if c.text not in SMALL and c.text not in SKIPPED]
    assert not neither, "documented commands neither run nor skipped (add each to SMALL, or to SKIPPED with why):\n" + \
                        "\n".join(neither)
    texts = {c.text for c in commands}
    stale = sorted(t for t in (*SMALL, *SKIPPED) if t not in texts)
    assert not stale, f"no page documents these any more (drop them from the tables): {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_the_documented_commands_work(tmp_path, page):
    status_before = _git_status()
    failures, not_run = run_page(page, tmp_path)
    assert _git_status() == status_before, "a documented command wrote into the clone"
    assert not failures, f"{len(failures)} documented command(s) of {page} failed:\n\n" + "\n\n".join(failures)
    if not_run:
        print("not run here:", *not_run, sep="\n  ")


@pytest.mark.slow
def test_the_readmes_python_runs_on_a_results_folder(tmp_path):
    for path in (ROOT / "results" / "h200-cnn-sweep-2").glob("cnn.py__*.json"):
        shutil.copy(path, tmp_path)
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks
    # Every DataFrame a block binds holds rows: a glob that matches nothing would give an empty one.
    check = ("\nimport pandas as _pd\n_frames = {k: len(v) for k, v in dict(globals()).items() "
             "if isinstance(v, _pd.DataFrame)}\nassert _frames and all(_frames.values()), _frames\nprint(_frames)\n")
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block + check], cwd=tmp_path, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), timeout=300)
        assert done.returncode == 0, f"README's block\n{block}failed:\n{done.stderr[-2000:]}"
        assert "Warning" not in done.stderr, done.stderr


def _git_status() -> str:
    if not (ROOT / ".git").exists():
        return ""
    done = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", ".",
                           ":!**/.dlmark-index/**", ":!**/__pycache__/**", ":!.pytest_cache/**"],
                          cwd=ROOT, capture_output=True, text=True)
    return done.stdout
