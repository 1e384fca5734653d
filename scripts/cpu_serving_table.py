"""The CPU serving table of BENCHMARKS.md, with its two cross-checks, from one results folder.

    PYTHONPATH=src python scripts/cpu_serving_table.py RESULTS_DIR

RESULTS_DIR holds a serving run (Offline at one batch size, SingleStream,
MultiStream, a Server search) and a throughput run of the same models and
runtimes at batch 1 and at the Offline batch (scripts/cpu_tables.sh makes
both). Prints, per model and runtime: each scenario's figure with LoadGen's
verdict, and the cross-checks: Offline / the throughput task at the same batch
(target within 10%), SingleStream p90 / the throughput task's batch-1 p90
(target within 10%).
"""
from __future__ import annotations

import sys

from dlmark.records.load import load_records


def _key(r: dict) -> tuple:
    return r.get("model"), r.get("backend"), r.get("precision"), r.get("compile_mode"), r.get("threads")


def _verdict(r: dict | None) -> str:
    if r is None:
        return "-"
    return "VALID" if r.get("valid") else "INVALID"


def table(records: list[dict]) -> list[dict]:
    ok = [r for r in records if r.get("status") == "ok"]
    throughput = {(_key(r), r["batch_size"]): r for r in ok if r.get("task") == "throughput"}
    steps = {key for r in ok for key in r.get("search_step_keys") or []}
    rows: dict[tuple, dict] = {}
    for r in ok:
        if r.get("task") != "serving":
            continue
        row = rows.setdefault(_key(r), {})
        scenario = r.get("scenario")
        if scenario == "server" and r.get("server_qps_at_bound") is None:
            # A step of a search (the answer record names the figure), or one run at a stated load.
            if r.get("job_key") not in steps:
                row.setdefault("server-at-load", r)
            continue
        row[scenario] = r
    out = []
    for key, row in sorted(rows.items(), key=lambda kv: [str(x) for x in kv[0]]):
        offline, single, multi, server, at_load = (row.get(s) for s in (
            "offline", "single-stream", "multi-stream", "server", "server-at-load"))
        task_offline = throughput.get((key, offline["batch_size"])) if offline else None
        task_b1 = throughput.get((key, 1))
        out.append({
            "model": key[0], "runtime": key[1] + (f":{key[3]}" if key[3] else ""), "precision": key[2],
            "threads": key[4],
            "offline": offline and (offline["throughput"], offline["batch_size"], _verdict(offline)),
            "offline_of_task": offline and task_offline and offline["throughput"] / task_offline["throughput"],
            "ss_p90": single and (single.get("latency_ms_p90"), _verdict(single)),
            "ss_of_task": (single and task_b1 and task_b1.get("latency_ms_p90")
                           and single["latency_ms_p90"] / task_b1["latency_ms_p90"]),
            "ms_p99": multi and (multi.get("latency_ms_p99"), _verdict(multi)),
            "server": server and (server["server_qps_at_bound"], server.get("latency_bound_ms"),
                                  server.get("latency_ms_p99"), _verdict(server)),
            "server_at_load": at_load and (at_load.get("target_qps"), at_load.get("latency_bound_ms"),
                                           at_load.get("latency_ms_p99"), _verdict(at_load)),
        })
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| model | runtime | precision | threads | Offline samples/s (batch) | Offline / throughput task | SingleStream p90 ms "
             "| SS p90 / batch-1 p90 | MultiStream p99 ms | Server QPS at p99 <= bound (p99 there) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        offline = f"{r['offline'][0]:,.1f} (b{r['offline'][1]}) {r['offline'][2]}" if r["offline"] else "-"
        ss = f"{r['ss_p90'][0]:.2f} {r['ss_p90'][1]}" if r["ss_p90"] else "-"
        ms = f"{r['ms_p99'][0]:.2f} {r['ms_p99'][1]}" if r["ms_p99"] else "-"
        server = (f"{r['server'][0]:,.1f} at {r['server'][1]:g} ms ({r['server'][2]:.1f}) {r['server'][3]}"
                  if r["server"] else "-")
        if not r["server"] and r["server_at_load"]:  # one run at a stated load, not a search
            qps, bound, p99, verdict = r["server_at_load"]
            server = f"one run at {qps:g} QPS, bound {bound:g} ms: p99 {p99:.1f} {verdict}"
        ratio = lambda x: f"{x:.3f}" if x else "-"  # noqa: E731
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['threads'] or '-'} | {offline} | {ratio(r['offline_of_task'])} | {ss} "
                     f"| {ratio(r['ss_of_task'])} | {ms} | {server} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(markdown(table(list(load_records(argv[0])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
