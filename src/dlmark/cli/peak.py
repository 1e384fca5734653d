"""``dlmark peak``: a device's measured dense matmul TFLOP/s and memory bandwidth (``measure.peak``)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("peak", help="measure a device's dense matmul TFLOP/s per precision and its memory bandwidth")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: a GPU when present)")
    parser.add_argument("--out", default="runs", help="results folder (default: runs)")
    parser.set_defaults(handler=main)


def main(args) -> int:
    from dlmark.measure.peak import format_peak, run_peak
    from dlmark.run.options import check_writable

    out = Path(args.out)
    check_writable(out)
    record = run_peak(args.device, out)
    print(f"{record['device']} ({record['device_spec']}), {record['peak_seconds']:.0f} s")
    print(format_peak(record))
    print(f"\npeak record written to {out}/; throughput records of this device in that folder now take their MFU from it")
    return 0
