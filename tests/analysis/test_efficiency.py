"""Peak table lookup, MFU and roofline arithmetic, and the fields records get."""
from __future__ import annotations

import pytest

from dlmark.analysis import efficiency as hardware
from dlmark.analysis.efficiency import lookup


@pytest.mark.parametrize("name, entry", [
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"), ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"),
    ("NVIDIA A10", "A10"), ("Tesla T4", "T4"), ("Tesla V100-SXM2-16GB", "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
])
def test_lookup_by_the_names_nvml_and_torch_print(name, entry):
    assert lookup(name).name == entry


@pytest.mark.parametrize("name", ["NVIDIA A10G", "AMD EPYC 7B13", "NVIDIA GeForce RTX 2060", "", None])
def test_unknown_devices_have_no_entry(name):
    assert lookup(name) is None


def test_table_is_dense_and_consistent():
    h200 = lookup("NVIDIA H200")
    assert h200.tflops["bf16"] == 989.5 and h200.tflops["fp32"] == 67.0 and h200.bandwidth_gbs == 4800.0
    for entry in hardware.PEAK_TABLE:
        t = entry.tflops
        assert t["fp32"] <= t["tf32"] <= t["fp16"], entry.name  # tensor cores never slower than fp32 units
        if "bf16" in t:
            assert t["bf16"] == t["fp16"], entry.name


def test_flop_counter_counts_a_multiply_add_as_two():
    torch = pytest.importorskip("torch")
    from dlmark.models.zoo import count_flops

    assert count_flops(torch.nn.Linear(64, 32, bias=False), (64,)) == 2 * 64 * 32
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (3, 16, 16)) == 2 * (3 * 3 * 3) * 8 * 16 * 16


def test_mfu_arithmetic():
    # ResNet-50: 8.18 GFLOP per image at 24,000 img/s = 196 TFLOP/s, 19.8% of an H200's bf16 peak.
    achieved = hardware.achieved_tflops(8.18e9, 24_000)
    assert achieved == pytest.approx(196.32)
    assert hardware.mfu(achieved, 989.5) == pytest.approx(196.32 / 989.5)
    assert hardware.achieved_tflops(None, 100) is None and hardware.mfu(1.0, None) is None


@pytest.mark.parametrize("precision, key", [("fp32", "fp32"), ("tf32", "tf32"), ("bf16", "bf16"),
                                            ("amp-bf16", "bf16"), ("fp16", "fp16"), ("amp-fp16", "fp16")])
def test_which_peak_a_precision_is_held_against(precision, key):
    peak, bandwidth, source = hardware.peak_for("NVIDIA H100 80GB HBM3", precision)
    assert peak == lookup("NVIDIA H100 80GB HBM3").tflops[key] and bandwidth == 3350.0 and source == "table"


def test_a_measured_peak_of_the_same_device_wins_over_the_table():
    old = {"task": "peak", "status": "ok", "device": "NVIDIA H200", "timestamp": "2025-01-01T00:00:00+00:00",
           "peak_tflops_bf16": 600.0, "peak_bandwidth_gbs": 4000.0}
    new = dict(old, timestamp="2025-06-01T00:00:00+00:00", peak_tflops_bf16=700.0, peak_bandwidth_gbs=4100.0)
    other = dict(new, device="NVIDIA H100 80GB HBM3", peak_tflops_bf16=1.0)
    measured = hardware.newest_peaks([old, other, new])["NVIDIA H200"]
    assert measured is new
    assert hardware.peak_for("NVIDIA H200", "amp-bf16", measured) == (700.0, 4100.0, hardware.MEASURED)
    # A precision the peak run did not measure falls back to the table.
    assert hardware.peak_for("NVIDIA H200", "fp32", measured) == (67.0, 4800.0, "table")


def _record(**over):
    r = {"task": "throughput", "status": "ok", "device": "NVIDIA H200", "device_spec": "cuda:0",
         "precision": "bf16", "flops_per_sample": 8e9, "throughput": 20_000.0, "params": 25_000_000,
         "activation_elements_per_sample": 45e6, "batch_size": 256}
    r.update(over)
    return r


def test_efficiency_fields_of_a_gpu_record():
    f = hardware.efficiency_fields(_record())
    assert f["achieved_tflops"] == pytest.approx(160.0)
    assert f["mfu"] == pytest.approx(160.0 / 989.5) and f["peak_source"] == "table"
    moved = 25e6 * 2 / 256 + 45e6 * 2
    assert f["bytes_per_sample_est"] == pytest.approx(moved)
    assert f["arithmetic_intensity"] == pytest.approx(8e9 / moved)
    assert f["ridge_intensity"] == pytest.approx(989.5e12 / 4800e9)
    assert f["bound"] == "memory"  # ~88 FLOP/byte, below the H200's ridge of ~206
    assert f["roofline_tflops"] == pytest.approx(8e9 / moved * 4.8)
    assert f["roofline_fraction"] == pytest.approx(160.0 / f["roofline_tflops"])


def test_bound_moves_with_batch_and_intensity():
    # Weights dominate at batch 1: a big-weight, small-activation model is memory-bound there ...
    small = hardware.efficiency_fields(_record(params=100_000_000, activation_elements_per_sample=1e5, batch_size=1))
    large = hardware.efficiency_fields(_record(params=100_000_000, activation_elements_per_sample=1e5, batch_size=4096))
    assert small["bound"] == "memory" and large["bound"] == "compute"
    assert large["roofline_tflops"] == pytest.approx(989.5)


def test_cpu_records_get_achieved_tflops_but_no_peak_unless_measured():
    cpu = _record(device="AMD EPYC", device_spec="cpu", precision="fp32")
    f = hardware.efficiency_fields(cpu)
    assert f["achieved_tflops"] == pytest.approx(160.0) and f["mfu"] is None and f["peak_source"] is None
    peak = {"task": "peak", "status": "ok", "device": "AMD EPYC", "peak_tflops_fp32": 1.6, "peak_bandwidth_gbs": 50.0}
    f = hardware.efficiency_fields(cpu, peak)
    assert f["mfu"] == pytest.approx(100.0) and f["peak_source"] == hardware.MEASURED


def test_failed_and_other_records_get_empty_fields():
    assert hardware.efficiency_fields(_record(status="oom"))["mfu"] is None
    assert set(hardware.efficiency_fields(_record(task="max_batch_size"))) == set(hardware.DERIVED_FIELDS)


def test_records_store_load_facts_and_no_derived_figure():
    facts = {"agreement_top1": 1.0, "agreement_ok": True, "activation_elements_per_sample": 45e6, "params": 1}
    stored = hardware.load_facts(facts)
    assert stored == {"agreement_top1": 1.0, "agreement_ok": True, "activation_elements_per_sample": 45e6}
    assert not set(stored) & set(hardware.DERIVED_FIELDS)


def test_derived_figures_come_from_the_peak_records_read_beside_them():
    """A peak record added later re-derives MFU of records written before it (issue: figures derived when read)."""
    cpu = _record(device="AMD EPYC", device_spec="cpu", precision="fp32", num_blocks=10, iters_per_block=2,
                  energy_j=51.2, batch_size=256)
    before = hardware.derive_records([cpu])[0]
    assert before["mfu"] is None and before["energy_j_per_sample"] == pytest.approx(51.2 / (10 * 2 * 256))
    peak = {"task": "peak", "status": "ok", "device": "AMD EPYC", "peak_tflops_fp32": 1.6, "timestamp": "2026"}
    after = hardware.derive_records([cpu, peak])[0]
    assert after["mfu"] == pytest.approx(100.0) and after["peak_source"] == hardware.MEASURED
    pd = pytest.importorskip("pandas")
    frame = hardware.derive(pd.DataFrame([cpu, peak]))
    assert frame.loc[0, "mfu"] == pytest.approx(100.0) and frame.loc[0, "peak_source"] == hardware.MEASURED


def test_activation_traffic_counts_materialised_outputs_twice():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(inplace=True), torch.nn.Flatten(),
                              torch.nn.Linear(20, 5))
    # input 10 read once; linear outputs 20 and 5 written and read; in-place ReLU and views move nothing.
    from dlmark.models import zoo

    assert zoo.count_activation_elements(net, (10,)) == 10 + 2 * 20 + 2 * 5


def test_peak_on_cpu_is_a_record_that_mfu_then_uses(tmp_path):
    pytest.importorskip("torch")
    from dlmark.measure import peak
    from dlmark.records.store import Store

    config = peak.PeakConfig(sizes=(64, 128), repeats=3, block_s=0.005, copy_bytes=1 << 20, warmup=1)
    record = peak.run_peak("cpu", tmp_path, config)
    assert record["task"] == "peak" and record["peak_tflops_fp32"] > 0 and record["peak_bandwidth_gbs"] > 0
    assert set(record["peak_details"]["matmul_tflops_by_size"]["fp32"]) == {"64", "128"}
    stored = list(Store(tmp_path, "peak.py").records())
    f = hardware.efficiency_fields(_record(device=record["device"], device_spec="cpu", precision="fp32"),
                                   hardware.newest_peaks(stored)[record["device"]])
    assert f["peak_source"] == hardware.MEASURED and f["peak_tflops"] == record["peak_tflops_fp32"]


@pytest.mark.gpu  # CUDA graphs
def test_cuda_graph_mode_computes_what_eager_computes():
    import torch

    from dlmark.backends import RunConfig, load

    eager = load("pytorch", "py:tests.fixtures.models:tiny", RunConfig(device="cuda:0"))
    graphed = load("pytorch", "py:tests.fixtures.models:tiny", RunConfig(device="cuda:0", compile_mode="cudagraphs"))
    x = eager.make_inputs(4, seed=1)
    for batch in (4, 8, 4):
        x = eager.make_inputs(batch, seed=batch)
        torch.testing.assert_close(graphed.run(x.clone()), eager.run(x))


def _derive_record_by_record(frame):
    """The per-record derive (``derive_records`` on each row's dict): what the column-wise ``derive`` must equal."""
    import pandas as pd

    if frame.empty or "task" not in frame:
        return frame
    is_peak = frame["task"] == "peak"
    is_thr = frame["task"] == "throughput"
    if not is_thr.any():
        return frame
    peak_rows = hardware._without_nan(frame[is_peak].to_dict("records")) if is_peak.any() else []
    rows = hardware._without_nan(frame[is_thr].to_dict("records"))
    derived = hardware.derive_records(peak_rows + rows)[len(peak_rows):]
    frame = frame.copy()
    for column in hardware.DERIVED_FIELDS:
        values = pd.Series([r.get(column) for r in derived], index=frame.index[is_thr], dtype=object)
        if column not in ("peak_source", "bound"):
            values = pd.to_numeric(values, errors="coerce")
        full = frame[column].astype(object) if column in frame else pd.Series(None, index=frame.index, dtype=object)
        full.loc[is_thr] = values
        frame[column] = full if column in ("peak_source", "bound") else pd.to_numeric(full, errors="coerce")
    return frame


def _assert_same_frames(got, want):
    import pandas as pd

    pd.testing.assert_frame_equal(got, want)
    for column in want.columns:  # also None against NaN, and int against float, which assert_frame_equal forgives
        if want[column].dtype == object:
            assert [type(v) for v in got[column]] == [type(v) for v in want[column]], column


def _varied_records():
    """Throughput records of every kind derive meets: GPUs in and out of the table, CPUs with and without a
    measured peak, missing and zero inputs, failed runs, other tasks, a stored figure from schema 1."""
    cpu_peaks = [
        {"task": "peak", "status": "ok", "device": "AMD EPYC", "timestamp": "2026-01", "peak_tflops_fp32": 1.5,
         "peak_bandwidth_gbs": 40.0},
        {"task": "peak", "status": "ok", "device": "AMD EPYC", "timestamp": "2026-03", "peak_tflops_fp32": 2,
         "peak_bandwidth_gbs": 50},  # the newest, in ints as JSON may hold them
        {"task": "peak", "status": "error", "device": "AMD EPYC", "timestamp": "2027-01", "peak_tflops_fp32": 9.0},
        {"task": "peak", "status": "ok", "device": "NVIDIA H200", "timestamp": "2026-02", "peak_tflops_bf16": 700.0},
    ]
    records = []
    devices = [("NVIDIA H200", "cuda:0"), ("NVIDIA A100-SXM4-80GB", "cuda:1"), ("Tesla T4", "cuda:0"),
               ("AMD EPYC", "cpu"), ("Intel Xeon", "cpu"), ("NVIDIA A10G", "cuda:0"), (None, None)]
    precisions = ["fp32", "bf16", "amp-bf16", "fp16", "fp8", "tf32", "", None, "int8"]
    for i in range(160):
        device, spec = devices[i % len(devices)]
        r = _record(device=device, device_spec=spec, precision=precisions[i % len(precisions)],
                    batch_size=[1, 8, 256, 0, None][i % 5], flops_per_sample=[8e9, 0, None, 4.1e9][i % 4],
                    throughput=[20_000.0, 1234.5, None][i % 3], params=[25_000_000, 0, None, 3][i % 4],
                    activation_elements_per_sample=[45e6, 0.0, None][i % 3])
        if i % 6 == 0:
            r.update(energy_j=51.2 + i, num_blocks=[10, 2.5, 0][i // 6 % 3], iters_per_block=2)
        if i % 11 == 0:
            r["status"] = "oom"
        if i % 13 == 0:
            r["task"] = "max_batch_size"
        if i % 17 == 0:
            r["mfu"] = 0.25  # a schema-1 record's stored figure: kept where nothing is derivable
        if i % 19 == 0:
            r["peak_source"] = "table"
        records.append(r)
    return cpu_peaks[:2] + records[:80] + cpu_peaks[2:] + records[80:]


def test_the_column_wise_derive_equals_deriving_record_by_record():
    pd = pytest.importorskip("pandas")
    records = _varied_records()
    frame = pd.DataFrame(records)
    _assert_same_frames(hardware.derive(frame), _derive_record_by_record(frame))
    # Of the throughput rows only (a reader's selection, another index), and with no peak records.
    thr = frame[frame.task == "throughput"].iloc[::2]
    _assert_same_frames(hardware.derive(thr), _derive_record_by_record(thr))
    no_peaks = pd.DataFrame([r for r in records if r["task"] != "peak" and r.get("status") == "ok"])
    _assert_same_frames(hardware.derive(no_peaks), _derive_record_by_record(no_peaks))
    derived = hardware.derive(frame)
    assert derived.mfu.notna().sum() > 10 and (derived.peak_source == hardware.MEASURED).any()
    assert set(derived.bound.dropna()) == {"compute", "memory"} and derived.energy_j_per_sample.notna().any()


def test_the_column_wise_derive_equals_deriving_record_by_record_on_the_committed_results():
    pd = pytest.importorskip("pandas")
    from pathlib import Path

    from dlmark.records.load import load_json_records

    results = Path(__file__).resolve().parents[2] / "results"
    records = load_json_records(results)
    assert len(records) > 500
    frame = pd.DataFrame(records)
    _assert_same_frames(hardware.derive(frame), _derive_record_by_record(frame))
