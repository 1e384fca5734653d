"""The CPU fp32/int8 table of BENCHMARKS.md (issue 16) from a results folder: img/s at 1 and 2 requests in
flight as ratios to PyTorch fp32 eager at one, the int8 share of FLOPs and the agreement with fp32.

    python scripts/int8_table.py [RESULTS]      # default results/cpu-tables-3/int8
"""
import sys
import json, glob
from collections import defaultdict
recs = [json.load(open(f)) for f in glob.glob((sys.argv[1] if len(sys.argv) > 1 else "results/cpu-tables-3/int8") + "/*.json")]
best = {}
for r in sorted(recs, key=lambda r: r["timestamp"]):
    n = (r.get("extra_config") or {}).get("in_flight", 1)
    rt = r["backend"] + (":" + r["compile_mode"] if r.get("compile_mode") else "")
    best[(r["model"], r["batch_size"], rt, r["precision"], n)] = r  # newest wins
rows = defaultdict(dict)
for (m, b, rt, p, n), r in best.items():
    rows[(m, b, rt, p)][n] = r
print("| model | batch | runtime | precision | img/s, 1 in flight (x PyTorch fp32 eager) | 2 in flight (x) | int8 share of FLOPs | agrees with fp32 (max rel. logit diff) |")
print("|---|---:|---|---|---:|---:|---|---|")
for (m, b, rt, p) in sorted(rows, key=lambda k: (k[0], k[1], k[3], k[2])):
    ref = rows[(m, b, "pytorch", "fp32")].get(1)
    ref_t = ref["throughput"] if ref and ref.get("status") == "ok" else None
    cells = []
    for n in (1, 2):
        r = rows[(m, b, rt, p)].get(n)
        if r is None: cells.append("-"); continue
        if r.get("status") != "ok": cells.append(f"{r['status']}: {str(r.get('error'))[:40]}"); continue
        t = r["throughput"]
        cells.append(f"{t:,.1f}{' noisy' if r.get('noisy') else ''} ({t / ref_t:.2f})" if ref_t else f"{t:,.1f}")
    any_ok = next((r for r in rows[(m, b, rt, p)].values() if r.get("status") == "ok"), {})
    share = any_ok.get("int8_flops_share")
    fl = f"{share:.1%} ({any_ok.get('float_ops')} float ops)" if isinstance(share, (int, float)) else "-"
    ag = any_ok.get("agreement_ok")
    diff = any_ok.get("agreement_max_rel")
    agree = "-" if ag is None else (("yes" if ag else "NO") + (f" ({diff:.2g})" if isinstance(diff, float) else ""))
    print(f"| {m} | {b} | {rt} | {p} | {cells[0]} | {cells[1]} | {fl} | {agree} |")
