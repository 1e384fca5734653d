"""``dlmark compare`` from the command line: exit codes 0 / 1 / 2, the three formats, colour only on a terminal."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from dlmark.cli import main

RESULTS = Path(__file__).resolve().parents[2] / "results"
SOURCE = RESULTS / "h200-tune"  # committed H200 records: tight blocks, several configurations


def _good(record: dict) -> bool:
    return (record.get("task") == "throughput" and record.get("status") == "ok" and not record.get("noisy")
            and not record.get("throttled") and len(record.get("block_times_s") or []) >= 8)


def _write_copies(folder: Path, time_factor: float, host: str, only_good: bool = True) -> int:
    """Copies of the committed files whose block times are multiplied by time_factor; returns how many."""
    folder.mkdir()
    n = 0
    for path in sorted(SOURCE.glob("*.json")):
        record = json.loads(path.read_text())
        if only_good and not _good(record):
            continue
        if record.get("block_times_s"):
            record["block_times_s"] = [t * time_factor for t in record["block_times_s"]]
            for k in ("throughput", "throughput_ci95_low", "throughput_ci95_high"):
                if record.get(k):
                    record[k] = record[k] / time_factor
        record["host"], record["run_id"] = host, f"run-{host}"
        (folder / path.name).write_text(json.dumps(record))
        n += 1
    return n


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    n = _write_copies(root / "base", 1.0, "alpha")
    _write_copies(root / "same", 1.0, "beta")
    _write_copies(root / "slower", 1.10, "beta")
    assert n >= 20, "the committed records this test copies are missing"
    return root, n


def _run(capsys, *args):
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_copies_exit_0_and_read_same(runs, capsys):
    root, n = runs
    code, out, err = _run(capsys, root / "base", root / "same", "--format", "json", "--fail-on-slower", "5%")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["pairs"]) == n and not data["unpaired_baseline"] and not data["unpaired_candidate"]
    assert {p["verdict"] for p in data["pairs"]} == {"same"}
    assert all(p["ratio"] == pytest.approx(1.0) for p in data["pairs"])


def test_ten_percent_slower_fails_the_five_percent_gate(runs, capsys):
    root, n = runs
    code, out, err = _run(capsys, root / "base", root / "slower", "--format", "json", "--fail-on-slower", "5%")
    assert code == 1
    data = json.loads(out)
    assert {p["verdict"] for p in data["pairs"]} == {"slower"}
    assert all(p["ratio"] == pytest.approx(1 / 1.10) and p["ci_low"] <= 1 / 1.10 <= p["ci_high"]
               for p in data["pairs"])
    assert data["geomean"]["overall"]["ratio"] == pytest.approx(1 / 1.10)
    assert err.startswith(f"dlmark compare: {n} pair(s) significantly slower by more than 5%:")
    # The same comparison without the gate, or with a gate above the change, passes.
    assert _run(capsys, root / "base", root / "slower")[0] == 0
    assert _run(capsys, root / "base", root / "slower", "--fail-on-slower", "15%")[0] == 0


def test_markdown_is_a_table_with_one_row_per_pair(runs, capsys):
    root, n = runs
    code, out, _ = _run(capsys, root / "base", root / "slower", "--format", "md")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f":red_circle: **{n} pairs: {n} slower")
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[0] == "model" and header[-1] == "verdict"
    assert set(table[1].strip("|").split("|")) <= {"---", "---:"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert len(rows) == n and all(len(r) == len(header) for r in rows)
    assert {r[-1] for r in rows} == {"**slower**"}
    ratio = header.index("ratio [95% CI]")
    assert all(r[ratio].startswith("0.909 [") for r in rows)


def test_unpaired_records_and_warnings_are_listed(runs, tmp_path, capsys):
    root, _ = runs
    cand = tmp_path / "cand"
    cand.mkdir()
    files = sorted((root / "same").glob("*.json"))
    for path in files[1:]:  # one configuration missing from the candidate ...
        record = json.loads(path.read_text())
        record["env"] = dict(record.get("env") or {}, torch="9.9.9")
        (cand / path.name).write_text(json.dumps(record))
    code, out, _ = _run(capsys, root / "base", cand)
    assert code == 0
    assert "only in baseline (1):" in out
    # ... and a torch version that differs without being the named axis is said, with its fix.
    assert "warning: env.torch differs" in out and "--axis env.torch" in out
    code, out, _ = _run(capsys, root / "base", cand, "--axis", "env.torch")
    assert "warning: env.torch differs" not in out and "env.torch: " in out and "-> 9.9.9" in out


def test_contended_records_are_named_with_the_fix(runs, tmp_path, capsys):
    root, _ = runs
    cand = tmp_path / "cand"
    cand.mkdir()
    for path in sorted((root / "slower").glob("*.json")):
        record = json.loads(path.read_text())
        record.update(contended=True, window_s=10.0, cpus_usable=2, other_cpu_s=9.0, cpu_steal_s=0.0,
                      loadavg_1m_before=5.5)
        (cand / path.name).write_text(json.dumps(record))
    code, out, _ = _run(capsys, root / "base", cand, "--fail-on-slower", "5%")
    assert code == 0  # a contended pair gets no verdict, so it cannot fail the gate
    assert "contended" in out
    warning = next(line for line in out.splitlines() if line.startswith("warning: contention"))
    assert "other processes used 45% of the 2 usable CPUs (load average 5.5)" in warning
    assert "run on an idle machine" in warning


@pytest.mark.parametrize("case", ["empty folder", "missing", "no pairs", "unknown axis", "bad threshold"])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, case):
    root, _ = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    cpu = RESULTS / "cpu-runtimes-2t-quiet"  # a CPU, not the H200: nothing pairs
    args, message = {
        "empty folder": ([root / "base", empty], "the candidate"),
        "missing": ([tmp_path / "nope", root / "base"], "the baseline"),
        "no pairs": ([root / "base", cpu], "no configuration is on both sides"),
        "unknown axis": ([root / "base", root / "same", "--axis", "env.tensorflow"], "unknown --axis 'env.tensorflow'"),
        "bad threshold": ([root / "base", root / "same", "--threshold", "lots"], "bad fraction 'lots'"),
    }[case]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("dlmark: error: ") and message in err and err.count("\n") == 1


def _console(args: list[str], tty: bool, env: dict) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "dlmark.cli", "compare", *map(str, args)]
    if not tty:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        return proc.returncode, proc.stdout
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=secondary, stderr=subprocess.DEVNULL, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return proc.wait(), b"".join(chunks).decode()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal")
def test_colour_only_on_a_terminal_without_no_color(runs):
    root, _ = runs
    args = [root / "base", root / "slower", "--fail-on-slower", "5%"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    code, text = _console(args, True, env)
    assert code == 1 and "\033[31m" in text  # slower in red
    code, text = _console(args, True, {**env, "NO_COLOR": "1"})
    assert code == 1 and "\033[" not in text and "slower" in text
    code, text = _console(args, False, env)
    assert code == 1 and "\033[" not in text and "slower" in text


# ------------------------------------------------------------ runs of one folder as the sides


@pytest.fixture(scope="module")
def two_runs(runs, tmp_path_factory):
    """One folder holding two runs of the same suite: run-alpha as written, run-beta 10% slower."""
    root, n = runs
    both = tmp_path_factory.mktemp("two-runs") / "results@2026"  # an '@' in a folder name still reads as a folder
    both.mkdir()
    for name, source in (("a", root / "base"), ("b", root / "slower")):
        for path in sorted(source.glob("*.json")):
            record = json.loads(path.read_text())
            if name == "b":
                record["timestamp"] = "2099-01-01T00:00:00+00:00"
            (both / f"{name}-{path.name}").write_text(json.dumps(record))
    return both, n


def test_two_runs_of_one_folder_by_run_id(two_runs, capsys):
    both, n = two_runs
    code, out, err = _run(capsys, f"{both}@run-alpha", f"{both}@run-beta", "--format", "json",
                          "--fail-on-slower", "5%")
    assert code == 1, err
    data = json.loads(out)
    assert len(data["pairs"]) == n and {p["verdict"] for p in data["pairs"]} == {"slower"}
    assert not data["unpaired_baseline"] and not data["unpaired_candidate"]
    assert not any("measured more than once" in w for w in data["warnings"])  # each side is one run
    # A prefix of the id will do, as for a git commit; the folder alone holds both runs.
    code, out, _ = _run(capsys, f"{both}@run-a", f"{both}@run-b", "--format", "json")
    assert code == 0 and len(json.loads(out)["pairs"]) == n
    code, out, _ = _run(capsys, f"{both}@run-a", both, "--format", "json")
    assert code == 0 and any("measured more than once" in w for w in json.loads(out)["warnings"])


@pytest.mark.parametrize("run,message", [
    ("nope", "no run 'nope' in "),
    ("run-", "run 'run-' is a prefix of 2 runs"),
])
def test_a_run_id_that_matches_no_single_run_is_one_line_exit_2(two_runs, capsys, run, message):
    both, _ = two_runs
    code, out, err = _run(capsys, f"{both}@{run}", f"{both}@run-beta")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert message in err
    if run == "nope":  # the runs that are there, with what they hold
        assert "run-alpha (" in err and "run-beta (" in err and "records" in err
