"""`dlmark report` at zoo scale: build time, the load/build split and page sizes, per record count.

    PYTHONPATH=src python scripts/report_bench.py --sizes 2000,20000,150000 --work /tmp/dlmark-report-scale
    python scripts/report_bench.py --src /other/checkout/src --sizes 2000 --timeout 900   # another version

The folders are scripts/scale_bench.py's synthetic records (copies of the committed real
records, one model per nine records). Each folder's index is built first (timed apart:
every reader pays it once); then `dlmark report` runs in a fresh process of the chosen
source tree, and, in another, `load_results` alone, so that the report's time splits
into loading and building. The load average is printed with every row.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import scale_bench  # noqa: E402  (the one generator of synthetic records)

LOAD = "import sys, warnings; warnings.simplefilter('ignore'); from dlmark.records.load import load_results; " \
       "print(len(load_results(sys.argv[1])))"


def run(src: Path, args: list[str], timeout: float) -> tuple[float, int, str, float]:
    """Wall seconds, exit status, last line of output, and CPU seconds (the process and its workers:
    on a shared machine the CPU time says more than the wall time)."""
    import resource

    env = dict(os.environ, PYTHONPATH=str(src))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -1, "timed out", float("nan")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = (done.stdout + done.stderr).strip().splitlines()
    return wall, done.returncode, output[-1] if output else "", cpu


def sizes(site: Path) -> tuple[str, int, str, int, int]:
    pages = {p: p.stat().st_size for p in site.glob("*.html")}
    data = {p: p.stat().st_size for p in (site / "data").glob("*.js")} if (site / "data").is_dir() else {}
    page = max(pages, key=pages.get) if pages else None
    js = max(data, key=data.get) if data else None
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    return (page.name if page else "-", pages.get(page, 0), js.name if js else "-", data.get(js, 0), total)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--work", default="/tmp/dlmark-report-scale")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the dlmark source tree to time (default: this one)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a report is stopped")
    args = parser.parse_args(argv)
    work, src = Path(args.work), Path(args.src)
    work.mkdir(parents=True, exist_ok=True)
    seeds = scale_bench.real_records(ROOT / "results")
    print(f"# {src}; {os.cpu_count()} CPUs; load average at start {scale_bench.load_average()}")
    print("| records | models | index build s | load_results s (CPU s) | report s (CPU s) | report minus load s | "
          "largest page | largest data file | site MB | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|---|")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        folder = work / f"records-{size}"
        if not (folder.is_dir() and sum(1 for _ in folder.glob("*.json")) == size):
            shutil.rmtree(folder, ignore_errors=True)
            scale_bench.make_folder(folder, size, seeds)
            time.sleep(2.1)  # past the index's racy window, as a finished sweep's files are
        before = scale_bench.load_average()
        index_s, _, _, _ = run(src, ["-c", LOAD, str(folder)], args.timeout)  # builds or refreshes the index
        load_s, rc, _, load_cpu = run(src, ["-c", LOAD, str(folder)], args.timeout)
        site = work / f"site-{size}"
        shutil.rmtree(site, ignore_errors=True)
        report_s, rc, last, report_cpu = run(src, ["-m", "dlmark.cli", "report", str(folder), "-o", str(site)],
                                             args.timeout)
        page, page_bytes, js, js_bytes, total = sizes(site)
        state = "" if rc == 0 else (" (stopped)" if rc == -1 else f" (rc {rc}: {last[:80]})")
        print(f"| {size:,} | {size // 9:,} | {index_s:.1f} | {load_s:.1f} ({load_cpu:.1f}) | "
              f"{report_s:.1f}{state} ({report_cpu:.1f}) | "
              f"{report_s - load_s:.1f} | {page} {page_bytes / 1e6:.2f} MB | {js} {js_bytes / 1e6:.2f} MB | "
              f"{total / 1e6:.1f} | {before} -> {scale_bench.load_average()} |", flush=True)
        print(f"#   {size:,}: {last}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
