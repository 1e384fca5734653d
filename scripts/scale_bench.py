"""Loading results at zoo scale: the JSON loop, the index's first build, warm loads, increments, `dlmark ls`.

    PYTHONPATH=src python scripts/scale_bench.py --sizes 2000,20000 --work /tmp/dlmark-scale

Synthetic folders are made from the committed real records (results/*/*.json):
each copy gets its own model name (about one per nine records, as a timm sweep
has), batch size, device, host and run id, and a unique file name, and is
written the way the store writes (indented JSON). Timings are side by side in
one process; the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["NVIDIA H200", "NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-16GB", "NVIDIA L4",
           "Intel(R) Xeon(R) Platinum 8480C", "AMD EPYC 9654 96-Core Processor"]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def real_records(results: Path) -> list[dict]:
    """The committed v1 records (dicts), the seeds of the synthetic ones."""
    out = []
    for path in sorted(results.glob("*/*.json")):
        try:
            payload = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("schema_version") == 1 and payload.get("model"):
            out.append(payload)
    if not out:
        raise SystemExit(f"no real records under {results}/*/*.json")
    return out


def make_folder(folder: Path, count: int, seeds: list[dict], start: int = 0, seed: int = 0) -> list[Path]:
    """Write ``count`` synthetic records into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed * 1_000_003 + start)
    models = max(1, count // 9) if start == 0 else max(1, count // 9)
    paths = []
    for i in range(start, start + count):
        base = seeds[i % len(seeds)]
        record = dict(base)
        zoo = i % models if start == 0 else (i - start) % models
        # The name follows the zoo index alone, so a model's records share it: one model per nine records.
        named = seeds[zoo % len(seeds)]["model"]
        model = f"{named}-z{zoo:05d}" if start == 0 else f"{named}-new{zoo:05d}"
        device = DEVICES[(i // 7) % len(DEVICES)]
        record.update(model=model, family=model.rsplit("-", 1)[0], device=device,
                      batch_size=BATCH_SIZES[i % len(BATCH_SIZES)] if base.get("task") == "throughput" else base.get("batch_size"),
                      host=f"node{i % 37:02d}", run_id=f"{i // 500:06x}{rng.getrandbits(24):06x}",
                      job_key=f"{i:08x}{rng.getrandbits(32):08x}")
        if isinstance(record.get("throughput"), (int, float)):
            record["throughput"] = record["throughput"] * (0.5 + rng.random())
        name = (f"cnn.py__benchmark_{record.get('task', 'x')}__{record['host']}__{device.replace(' ', '-')}"
                f"__{model}__{record['job_key']}.json")
        path = folder / name
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        paths.append(path)
    return paths


def plain_loop(folder: Path) -> int:
    rows = 0
    for path in sorted(folder.glob("*.json")):
        with open(path) as f:
            payload = json.load(f)
        rows += len(payload) if isinstance(payload, list) else 1
    return rows


def dlmark_src() -> str:
    """The folder the dlmark being measured is imported from."""
    import dlmark

    return str(Path(dlmark.__file__).resolve().parents[1])


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t, value


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stat_floor(folder: Path) -> int:
    """The floor of any load that validates every file: one walk of the folder and a stat of each JSON file."""
    count = 0
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    entry.stat()
                    count += 1
                elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") \
                        and entry.name != "loadgen":
                    stack.append(entry.path)
    return count


def bench_size(size: int, work: Path, seeds: list[dict], with_ls: bool, keep: bool) -> dict:
    folder = work / f"records-{size}"
    if folder.exists():
        shutil.rmtree(folder)
    gen_s, _ = timed(make_folder, folder, size, seeds)
    row = measure(folder, size, seeds, with_ls)
    row["generate_s"] = gen_s
    if not keep:
        shutil.rmtree(folder)
    return row


def measure(folder: Path, size: int, seeds: list[dict], with_ls: bool) -> dict:
    """Every step on a folder of ``size`` synthetic records with no index yet; it is left as it came."""
    from dlmark.records import index as ix

    shutil.rmtree(folder / ix.INDEX_DIR, ignore_errors=True)
    # Files written within RACY_NS of indexing are parsed again on the next load (their
    # mtime cannot yet prove they are unchanged); a sweep's files are older than that.
    time.sleep(ix.RACY_NS / 1e9)
    row = {"records": size, "models": max(1, size // 9), "load_before": load_average()}
    row["json_loop_s"], rows = timed(plain_loop, folder)
    row["floor_s"], _ = timed(stat_floor, folder)
    row["build_s"], df = timed(ix.load_index, folder)
    assert len(df) == rows, (len(df), rows)
    row["warm_s"], df = timed(ix.load_index, folder)
    assert len(df) == rows
    row["warm_samples_s"], _ = timed(ix.load_index, folder, with_samples=True)
    # The readers' calls, warm: load_results (the seed's, with samples, derived figures added)
    # and load_records (what `dlmark compare` calls: dicts, derived).
    from dlmark.records.load import load_records, load_results

    row["load_results_s"], df = timed(load_results, folder)
    assert len(df) == rows
    row["load_results_light_s"], df = timed(load_results, folder, with_samples=False)
    assert len(df) == rows
    del df
    row["load_records_s"], _ = timed(load_records, folder)
    added = make_folder(folder, 1000, seeds, start=size, seed=1)
    time.sleep(ix.RACY_NS / 1e9)  # so the new files are not "racy" (re-read on the next load)
    row["add_1000_s"], _ = timed(ix.refresh, folder)
    row["warm_after_add_s"], df = timed(ix.load_index, folder)
    assert len(df) == rows + 1000
    del df
    row["rebuild_s"], _ = timed(ix.rebuild, folder)
    row["index_mb"] = ix.index_stats(folder)["bytes"] / 1e6
    row["json_mb"] = sum(p.stat().st_size for p in folder.glob("*.json")) / 1e6
    for path in added:  # back to ``size`` files, so that another dlmark can be measured on the same folder
        path.unlink()
    if with_ls:
        # The same dlmark as this process imported (PYTHONPATH=/other/checkout/src measures that one).
        env = dict(os.environ, PYTHONPATH=dlmark_src() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        runs = []
        for _ in range(2):  # the first pays the index update after the 1,000 files went; the second is warm
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dlmark.cli", "ls", str(folder)], capture_output=True,
                                  text=True, env=env, timeout=3600)
            runs.append(time.perf_counter() - t)
        row["ls_s"] = runs[-1]
        row["ls_rc"] = done.returncode
        row["ls_sha"] = __import__("hashlib").sha256(done.stdout.encode()).hexdigest()[:12]
    shutil.rmtree(folder / ix.INDEX_DIR, ignore_errors=True)
    row["load_after"] = load_average()
    return row


def compare_formats(size: int, work: Path, seeds: list[dict]) -> list[tuple[str, str, str]]:
    """Parquet (pyarrow) against DuckDB on the same rows: write, warm load, add 1,000, a second process."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dlmark.records import index as ix

    folder = work / f"formats-{size}"
    if folder.exists():
        shutil.rmtree(folder)
    make_folder(folder, size + 1000, seeds)
    names = sorted(p.name for p in folder.glob("*.json"))
    rows, _ = ix._parse(folder, names[:size], [])
    table = ix._rows_to_table(rows)
    extra_rows, _ = ix._parse(folder, names[size:], [])
    extra = ix._rows_to_table(extra_rows)
    samples = [c for c in table.schema.names if c in ix.SAMPLE_FIELDS]
    light = [c for c in table.schema.names if c not in samples]
    out = []
    # Parquet: one segment file; an increment is one more file.
    pq_path = folder / "rows.parquet"
    t_write, _ = timed(pq.write_table, table, pq_path, compression="zstd")
    t_load, df = timed(lambda: pq.read_table(pq_path, columns=light).to_pandas())
    t_add, _ = timed(pq.write_table, extra, folder / "rows-2.parquet", compression="zstd")
    out.append(("parquet", f"write {t_write:.2f} s, warm load {t_load:.2f} s, add 1,000 {t_add:.3f} s",
                f"{pq_path.stat().st_size / 1e6:.1f} MB"))
    # DuckDB: one database file; an increment deletes the files' old rows and inserts the new.
    db_path = folder / "rows.duckdb"
    con = duckdb.connect(str(db_path))
    con.register("arrow_rows", table)
    t_write, _ = timed(lambda: con.execute("CREATE TABLE rows AS SELECT * FROM arrow_rows"))
    con.close()

    def duck_load():
        c = duckdb.connect(str(db_path), read_only=True)
        cols = ", ".join(f'"{c_}"' for c_ in light)
        frame = c.execute(f"SELECT {cols} FROM rows").df()
        c.close()
        return frame

    t_load, ddf = timed(duck_load)

    def duck_add():
        c = duckdb.connect(str(db_path))
        c.register("extra", extra)
        common = [n for n in extra.schema.names if n in table.schema.names]
        cols = ", ".join(f'"{n}"' for n in common)
        c.execute(f'DELETE FROM rows WHERE "{ix._PATH}" IN (SELECT "{ix._PATH}" FROM extra)')
        c.execute(f"INSERT INTO rows ({cols}) SELECT {cols} FROM extra")
        c.close()

    t_add, _ = timed(duck_add)
    # A second process reads while this one holds the database open for writing.
    holder = duckdb.connect(str(db_path))
    probe = subprocess.run([sys.executable, "-c", "import duckdb,sys; duckdb.connect(sys.argv[1], read_only=True)"
                            ".execute('select count(*) from rows').fetchall(); print('read ok')", str(db_path)],
                           capture_output=True, text=True)
    holder.close()
    reader = "read ok" if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1][:120]
    out.append(("duckdb", f"write {t_write:.2f} s, warm load {t_load:.2f} s, add 1,000 {t_add:.3f} s",
                f"{db_path.stat().st_size / 1e6:.1f} MB; another process reading during a write: {reader}"))
    out.append(("pandas dtypes", f"parquet object columns {sum(df.dtypes == object)}, "
                f"duckdb object columns {sum(ddf.dtypes == object)}", f"{len(df)} rows x {len(df.columns)}"))
    shutil.rmtree(folder)
    return out


HEADER = ("records", "models", "dlmark", "json loop s", "floor s", "first build s", "warm load s", "warm / loop",
          "build / loop", "add 1,000 s", "rebuild s", "add / rebuild", "with samples s", "load_results s",
          "load_results / loop", "load_results no samples s", "load_records s", "ls s", "ls output", "index MB",
          "json MB", "load avg")


def table_row(label: str, r: dict) -> str:
    loop = r["json_loop_s"]
    ls = f"{r['ls_s']:.2f}" + ("" if r.get("ls_rc") == 0 else f" (rc {r.get('ls_rc')})") if "ls_s" in r else "-"
    return (f"| {r['records']:,} | {r['models']:,} | {label} | {loop:.2f} | {r['floor_s']:.3f} | {r['build_s']:.2f} | "
            f"{r['warm_s']:.3f} | {r['warm_s'] / loop:.3f} | {r['build_s'] / loop:.2f} | {r['add_1000_s']:.3f} | "
            f"{r['rebuild_s']:.2f} | {r['add_1000_s'] / r['rebuild_s']:.3f} | {r['warm_samples_s']:.2f} | "
            f"{r['load_results_s']:.2f} | {r['load_results_s'] / loop:.3f} | {r['load_results_light_s']:.2f} | "
            f"{r['load_records_s']:.2f} | {ls} | {r.get('ls_sha', '-')} | {r['index_mb']:.1f} | {r['json_mb']:.0f} | "
            f"{r['load_before']} -> {r['load_after']} |")


def measure_elsewhere(src: str, folder: Path, size: int, args) -> dict:
    """``measure`` in a fresh process that imports dlmark from ``src`` (another checkout's, say)."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    command = [sys.executable, __file__, "--measure", str(folder), "--sizes", str(size), "--results", args.results]
    done = subprocess.run(command + (["--ls"] if args.ls else []), capture_output=True, text=True, env=env,
                          timeout=7200)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode or not lines:
        raise SystemExit(f"measuring {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][4:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000", help="comma-separated record counts")
    parser.add_argument("--work", default="/tmp/dlmark-scale", help="where the synthetic folders go (not the repo)")
    parser.add_argument("--results", default=str(ROOT / "results"), help="folder of real records to copy from")
    parser.add_argument("--ls", action="store_true", help="also time `python -m dlmark.cli ls FOLDER`")
    parser.add_argument("--formats", type=int, default=0, metavar="N", help="also compare Parquet and DuckDB on N records")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic folders")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the issue's ratios hold")
    parser.add_argument("--src", action="append", default=[], metavar="LABEL=FOLDER",
                        help="measure the dlmark importable from FOLDER (e.g. a checkout's src) under LABEL, each in "
                             "its own process on the same folder, one after the other; repeatable, in the order "
                             "given (before=/tmp/main-src --src after=src, then after, before to see the order's part)")
    parser.add_argument("--measure", metavar="FOLDER", help=argparse.SUPPRESS)  # one --src's child: one size
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import pandas  # noqa: F401  imported before any timing: every reader pays it once per process
    import pyarrow.parquet  # noqa: F401
    seeds = real_records(Path(args.results))
    if args.measure:
        print("ROW " + json.dumps(measure(Path(args.measure), int(args.sizes), seeds, args.ls)))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sources = [tuple(s.split("=", 1)) if "=" in s else (s, s) for s in args.src]
    print(f"# {len(seeds)} real records as seeds; dlmark from "
          f"{', '.join(f'{label}: {os.path.abspath(src)}' for label, src in sources) or dlmark_src()}; "
          f"load average at start {load_average()}; {os.cpu_count()} CPUs")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---:|" * len(HEADER))
    ok = True
    for size in [int(s) for s in args.sizes.split(",") if s]:
        if not sources:
            r = bench_size(size, work, seeds, args.ls, args.keep)
            print(table_row("this", r), flush=True)
            rows = [r]
        else:
            folder = work / f"records-{size}"
            if folder.exists():
                shutil.rmtree(folder)
            make_folder(folder, size, seeds)
            rows = []
            for label, src in sources:
                rows.append(measure_elsewhere(src, folder, size, args))
                print(table_row(label, rows[-1]), flush=True)
            if not args.keep:
                shutil.rmtree(folder)
        r = rows[-1]
        ok &= r["warm_s"] / r["json_loop_s"] <= 0.05 and r["build_s"] / r["json_loop_s"] <= 1.5 and (
            size < 20000 or r["add_1000_s"] / r["rebuild_s"] <= 0.02)
    if args.formats:
        print(f"\n# Parquet vs DuckDB on {args.formats:,} records (load average {load_average()})")
        for name, figures, notes in compare_formats(args.formats, work, seeds):
            print(f"- {name}: {figures}; {notes}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
