"""analysis.int8: one row per quantized graph, with its share of FLOPs and the operators left in float."""
import pytest

from dlmark.analysis.int8 import FALLBACKS_SHOWN, fallbacks_text, int8_rows

import synthetic_results as synthetic


def test_batch_sizes_and_requests_in_flight_of_one_graph_are_one_row():
    records = [synthetic.int8_record("SqueezeNet-1.1", "openvino", batch, in_flight=n, int8_share=0.977,
                                     fallbacks=synthetic.OPENVINO_FALLBACKS) for batch in (1, 32) for n in (1, 2)]
    records += [synthetic.int8_record("SqueezeNet-1.1", "onnxruntime", batch, fallbacks=["ReduceMean pool"])
                for batch in (1, 32)]
    records.append(synthetic.throughput_record("SqueezeNet-1.1", synthetic.CPU, 1))  # fp32: no account
    openvino, onnxruntime = sorted(int8_rows(records), key=lambda r: r["runtime"], reverse=True)
    assert openvino["runtime"] == "openvino" and openvino["records"] == 4 and openvino["float_ops"] == 6
    assert openvino["int8_flops_share"] == 0.977 and openvino["fallbacks"].startswith("Convolution fire3/squeeze, ")
    assert openvino["int8_gflops"] + openvino["float_gflops"] == pytest.approx(698_303_872 / 1e9)
    assert onnxruntime["records"] == 2 and onnxruntime["fallbacks"] == "ReduceMean pool"
    assert onnxruntime["agrees"] == "yes" and onnxruntime["calibration"] == "32 generated"


def test_one_disagreeing_record_of_a_graph_says_no():
    records = [synthetic.int8_record("ResNet-v1-50", "onnxruntime", 1),
               synthetic.int8_record("ResNet-v1-50", "onnxruntime", 32, agrees=False)]
    row, = int8_rows(records)
    assert row["agrees"] == "NO" and row["fallbacks"] == "none"


def test_long_fallback_lists_name_the_first_and_count_the_rest():
    names = [f"Conv c{i}" for i in range(FALLBACKS_SHOWN + 3)]
    text = fallbacks_text(names)
    assert text.endswith(f"Conv c{FALLBACKS_SHOWN - 1} and 3 more") and f"c{FALLBACKS_SHOWN}," not in text
    assert fallbacks_text([]) == "none" and fallbacks_text(None) is None
