"""dlmark.plot and dlmark.analysis.pareto: what the figures contain, not just that they build."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bokeh.embed import file_html
from bokeh.models import GlyphRenderer, GridPlot, HoverTool, LabelSet, LogScale
from bokeh.resources import INLINE

from dlmark import plot
from dlmark.errors import UserError
from dlmark.analysis.pareto import pareto_frontier

import synthetic_results as synthetic

GPU, CPU = synthetic.GPU, synthetic.CPU


def records(rows: list[dict]) -> pd.DataFrame:
    """Records as load_results returns them: the env object flattened to env.* columns."""
    return pd.json_normalize(rows, max_level=1)


@pytest.fixture(scope="module")
def thr() -> pd.DataFrame:
    rows = [synthetic.throughput_record(model, device, batch)
            for device in (GPU, CPU) for model in ("AlexNet", "ResNet-v2-50", "VGG-16")
            for batch in (1, 4, 16, 64)]
    rows.append(synthetic.throughput_record("VGG-16", GPU, 4096, status="oom"))
    return records(rows)


@pytest.fixture(scope="module")
def largest() -> pd.DataFrame:
    return records([synthetic.max_batch_record(model, device)
                    for device in (GPU, CPU) for model in ("AlexNet", "ResNet-v2-50", "VGG-16")])


def glyph_renderers(fig, glyph: str) -> list[GlyphRenderer]:
    return [r for r in fig.renderers if isinstance(r, GlyphRenderer) and type(r.glyph).__name__ == glyph]


def plotted(fig, glyph: str, column: str) -> list:
    """Every value of ``column`` drawn by glyphs of one kind."""
    return [value for r in glyph_renderers(fig, glyph) for value in r.data_source.data[column]]


def legend_labels(fig) -> list[str]:
    return [item.label.value for legend in fig.legend for item in legend.items]


def hover_text(fig) -> str:
    tools = [tool for tool in fig.toolbar.tools if isinstance(tool, HoverTool)]
    assert tools, "figure has no hover tool"
    for tool in tools:
        # List-form tooltips show values as text; an HTML string template would not.
        assert isinstance(tool.tooltips, list)
    return " ".join(f"{label} {value}" for tool in tools for label, value in tool.tooltips)


def test_importing_plot_does_not_import_torch():
    code = "import sys, dlmark.plot, dlmark.analysis.pareto; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_throughput_plot_has_log_axes_units_and_skips_failed_records(thr):
    fig = plot.batch_size_vs_throughput(thr)
    assert isinstance(fig.x_scale, LogScale) and isinstance(fig.y_scale, LogScale)
    assert "images/s" in fig.yaxis[0].axis_label and "batch size" in fig.xaxis[0].axis_label
    batches = plotted(fig, "Scatter", "batch_size")
    assert sorted(set(batches)) == [1, 4, 16, 64]  # the oom record at 4096 is not drawn
    assert not any(math.isnan(v) for v in plotted(fig, "Scatter", "throughput"))
    assert len(glyph_renderers(fig, "Line")) == 6  # 3 models x 2 devices
    assert f"AlexNet on {GPU}" in legend_labels(fig)
    hover = hover_text(fig)
    for unit in ("images/s", " ms", " MB"):
        assert unit in hover


def test_marker_area_grows_with_device_memory(thr):
    fig = plot.batch_size_vs_throughput(thr[thr.device == GPU])
    for renderer in glyph_renderers(fig, "Scatter"):
        data = renderer.data_source.data
        order = np.argsort(data["device_mem"])
        assert list(np.diff(np.asarray(data["marker_size"])[order]) > 0) == [True] * (len(order) - 1)


def test_grid_takes_the_seed_numpy_model_array_and_makes_one_plot_per_model(thr):
    models = thr.model.unique()  # a numpy array, as in the seed notebook
    grid = plot.batch_size_vs_throughput_grid(thr[thr.device == thr.device.unique()[0]], models[::2])
    assert isinstance(grid, GridPlot)
    figures = [child[0] for child in grid.children]
    assert [f.title.text for f in figures] == list(models[::2])
    assert all(isinstance(f.x_scale, LogScale) for f in figures)


def test_grid_says_so_for_a_model_without_successful_records(thr):
    grid = plot.batch_size_vs_throughput_grid(thr, ["AlexNet", "NoSuchNet"])
    empty = [child[0] for child in grid.children if child[0].title.text == "NoSuchNet"][0]
    assert plotted(empty, "Text", "text") == ["no successful measurements"]


def test_only_failed_records_give_an_empty_figure_not_an_error(thr):
    failed = records([synthetic.throughput_record("VGG-16", GPU, 4096, status="oom")])
    fig = plot.batch_size_vs_throughput(failed)
    assert plotted(fig, "Text", "text") == ["no successful measurements"]


@pytest.mark.parametrize("function, column", [
    (plot.batch_size_vs_throughput, "throughput"),
    (plot.latency_vs_throughput, "latency_ms_median"),
    (plot.throughput_vs_device, "device"),
    (plot.throughput_vs_accuracy, "accuracy"),
    (plot.max_batch_size, "batch_size"),
])
def test_a_missing_column_is_a_user_error_naming_it(thr, function, column):
    with pytest.raises(UserError, match=repr(column)):
        function(thr.drop(columns=[column]) if column in thr else thr)


def test_memory_plot_without_any_memory_column_names_them(thr):
    memory_columns = ["peak_mem_allocated_mb", "peak_mem_reserved_mb", "nvml_mem_used_mb",
                      "peak_rss_mb", "device_mem"]
    with pytest.raises(UserError, match="peak_mem_allocated_mb"):
        plot.batch_size_vs_memory(thr.drop(columns=memory_columns))


def test_memory_plot_shows_allocated_reserved_nvml_on_gpu_and_rss_on_cpu(thr):
    fig = plot.batch_size_vs_memory(thr)
    # Six lines of four kinds: the legend names each line once, the title says which dash is which kind.
    assert sorted(legend_labels(fig)) == sorted({f"{m} on {d}" for m in ("AlexNet", "ResNet-v2-50", "VGG-16")
                                                 for d in (GPU, CPU)})
    for kind in ("solid: allocated (torch)", "dashed: reserved (torch cache)", "dotted: in use (NVML)",
                 "solid: peak RSS (CPU)"):
        assert kind in fig.title.text
    gpu = thr[(thr.device == GPU) & (thr.status == "ok")]
    for renderer in glyph_renderers(fig, "Line"):
        data = renderer.data_source.data
        if data["kind"][0] == "reserved (torch cache)" and data["model"][0] == "AlexNet":
            expected = gpu[gpu.model == "AlexNet"].sort_values("batch_size")["peak_mem_reserved_mb"]
            assert list(data["memory_mb"]) == pytest.approx(list(expected))
    assert "MB" in fig.yaxis[0].axis_label and "MB" in hover_text(fig)


def test_memory_plot_tells_two_precisions_apart(thr):
    gpu = thr[(thr.device == GPU) & (thr.model == "ResNet-v2-50") & (thr.status == "ok")]
    half = gpu.copy()
    half["precision"] = "bf16"
    half[["peak_mem_allocated_mb", "peak_mem_reserved_mb", "nvml_mem_used_mb"]] /= 2
    fig = plot.batch_size_vs_memory(pd.concat([gpu, half], ignore_index=True))
    labels = set(legend_labels(fig))
    assert {"fp32 · allocated (torch)", "bf16 · allocated (torch)", "bf16 · reserved (torch cache)"} <= labels
    colour_of = {r.data_source.data["variant"][0]: r.glyph.line_color for r in glyph_renderers(fig, "Line")}
    assert colour_of["fp32"] != colour_of["bf16"]
    dash_of = {(r.data_source.data["variant"][0], r.data_source.data["kind"][0]): tuple(r.glyph.line_dash)
               for r in glyph_renderers(fig, "Line")}
    assert dash_of[("bf16", "allocated (torch)")] != dash_of[("bf16", "reserved (torch cache)")]
    assert "@variant" in hover_text(fig)


def test_memory_plot_gives_each_model_its_colour_and_legend_entry(thr):
    # Four models on one CPU: once four lines of one colour under one entry ("peak RSS (CPU)").
    cpu = records([synthetic.throughput_record(model, CPU, batch)
                   for model in ("AlexNet", "ResNet-v2-50", "VGG-16", "SqueezeNet-1.1") for batch in (1, 4, 16)])
    fig = plot.batch_size_vs_memory(cpu)
    lines = glyph_renderers(fig, "Line")
    assert len(lines) == 4
    assert len({line.glyph.line_color for line in lines}) == 4
    assert sorted(legend_labels(fig)) == ["AlexNet", "ResNet-v2-50", "SqueezeNet-1.1", "VGG-16"]


def test_many_lines_share_one_renderer_and_keep_their_colours_and_legend():
    # A dozen models: one multi-line and one scatter, not two renderers a model (Bokeh's cost grows with them).
    models = [f"Net-{i}" for i in range(12)]
    data = records([synthetic.throughput_record(model, GPU, batch) for model in models for batch in (1, 4, 16)])
    for fig in (plot.batch_size_vs_throughput(data), plot.latency_vs_throughput(data)):
        assert len(glyph_renderers(fig, "MultiLine")) == 1 and len(glyph_renderers(fig, "Scatter")) == 1
        lines = glyph_renderers(fig, "MultiLine")[0].data_source.data
        assert len(lines["xs"]) == 12 and len(set(lines["line_color"])) == 12
        points = glyph_renderers(fig, "Scatter")[0].data_source.data
        assert sorted(set(points["legend_name"])) == sorted(models)
        assert len(points["model"]) == 12 * 3
        hover = [tool for tool in fig.toolbar.tools if isinstance(tool, HoverTool)][0]
        assert hover.renderers == glyph_renderers(fig, "Scatter")  # the lines carry no fields to show
    # Memory: a multi-line per kind (its dash), each with its own legend field, which Bokeh accepts.
    from bokeh.core.validation import check_integrity

    fig = plot.batch_size_vs_memory(data)
    assert len(glyph_renderers(fig, "MultiLine")) == 3
    assert len({tuple(r.glyph.line_dash) for r in glyph_renderers(fig, "MultiLine")}) == 3
    assert check_integrity(fig.references()).error == []


def test_memory_plot_of_2018_records_falls_back_to_device_mem():
    old = pd.DataFrame({"model": ["AlexNet"] * 3, "device": ["GPU"] * 3, "batch_size": [1, 2, 4],
                        "throughput": [10.0, 20.0, 30.0], "device_mem": [100.0, 120.0, 160.0]})
    fig = plot.batch_size_vs_memory(old)
    assert legend_labels(fig) == ["device memory (seed's device_mem)"]


def test_max_batch_size_with_two_devices_is_grouped_bars(largest):
    fig = plot.max_batch_size(largest)
    bars = glyph_renderers(fig, "HBar")
    assert len(bars) == 2 and set(legend_labels(fig)) == {GPU, CPU}
    assert list(fig.y_range.factors) == ["VGG-16", "ResNet-v2-50", "AlexNet"]
    expected = largest.set_index(["model", "device"])["max_batch_size"]
    for bar in bars:
        data = bar.data_source.data
        for model, device, value in zip(data["model"], data["device"], data["largest"]):
            assert value == expected[(model, device)]


def test_max_batch_size_with_one_device_has_no_legend(largest):
    fig = plot.max_batch_size(largest[largest.device == CPU])
    assert legend_labels(fig) == [] and CPU in fig.title.text


def test_throughput_vs_device_draws_a_bar_per_device_and_batch(thr):
    fig = plot.throughput_vs_device(thr[thr.model == "AlexNet"])
    assert fig.title.text == "Throughput of AlexNet across devices"
    assert list(fig.x_range.factors) == ["1", "4", "16", "64"]
    assert isinstance(fig.y_scale, LogScale)
    bars = glyph_renderers(fig, "VBar")
    assert sorted(legend_labels(fig)) == sorted([GPU, CPU]) and len(bars) == 2
    assert sum(len(b.data_source.data["throughput"]) for b in bars) == 8


def test_latency_vs_throughput_orders_points_by_batch_size_and_names_them(thr):
    fig = plot.latency_vs_throughput(thr)
    for line in glyph_renderers(fig, "Line"):
        assert list(line.data_source.data["batch_size"]) == [1, 4, 16, 64]
    assert "ms" in fig.xaxis[0].axis_label
    # Which point is which batch size is written beside each point, not only in the hover.
    labels = [layout for layout in fig.center if isinstance(layout, LabelSet)]
    assert len(labels) == 1
    data = labels[0].source.data
    chunks = [list(data["batch_label"][i:i + 4]) for i in range(0, len(data["batch_label"]), 4)]
    assert len(chunks) == len(glyph_renderers(fig, "Line")) and all(c == ["1", "4", "16", "64"] for c in chunks)
    assert len(set(data["label_color"])) == len(glyph_renderers(fig, "Line"))  # in the colour of its line


def seed_accuracy_frame(thr: pd.DataFrame) -> pd.DataFrame:
    """The seed notebook's accuracy cell, verbatim apart from where acc comes from."""
    acc = records([synthetic.accuracy_record(m, GPU, 16) for m in ("AlexNet", "ResNet-v2-50", "VGG-16")])
    data = thr[(thr.model.isin(acc.model)) &
               (thr.batch_size.isin(acc.batch_size)) &
               (thr.device.isin(acc.device))]
    data = data.set_index('model').join(acc[['model', 'accuracy']].set_index('model'))
    data['model_prefix'] = [i[:i.rfind('-')] if i.rfind('-') > 0 else i for i in data.index]
    return data


def test_accuracy_plot_takes_the_seed_shape_and_draws_the_pareto_frontier(thr):
    data = seed_accuracy_frame(thr)
    assert data.index.name == "model"
    fig = plot.throughput_vs_accuracy(data)
    assert isinstance(fig.x_scale, LogScale)
    assert set(legend_labels(fig)) == {"AlexNet", "ResNet-v2", "VGG", "Pareto frontier"}
    frontier_line = glyph_renderers(fig, "Line")[0].data_source.data
    # VGG-16 is slower and less accurate than ResNet-v2-50: it is not on the frontier.
    assert list(frontier_line["model"]) == ["ResNet-v2-50", "AlexNet"]
    labels = [a for a in fig.center if isinstance(a, LabelSet)]
    assert labels and list(labels[0].source.data["model"]) == ["ResNet-v2-50", "AlexNet"]
    assert "@accuracy{0.00%}" in hover_text(fig)


def test_accuracy_plot_skips_failed_records_and_keeps_one_row_per_model(thr):
    data = seed_accuracy_frame(thr).reset_index()
    doubled = pd.concat([data, data.assign(status="oom", throughput=None)], ignore_index=True)
    fig = plot.throughput_vs_accuracy(doubled)
    assert sorted(plotted(fig, "Scatter", "model")) == ["AlexNet", "ResNet-v2-50", "VGG-16"]


def test_every_figure_has_a_title_and_renders_to_standalone_html(thr, largest):
    figures = [plot.batch_size_vs_throughput(thr), plot.max_batch_size(largest),
               plot.throughput_vs_device(thr[thr.model == "VGG-16"]), plot.batch_size_vs_memory(thr),
               plot.latency_vs_throughput(thr), plot.throughput_vs_accuracy(seed_accuracy_frame(thr))]
    for fig in figures:
        assert fig.title.text
        assert fig.xaxis[0].axis_label or fig.yaxis[0].axis_label
        html = file_html(fig, INLINE, "t")
        assert "cdn.bokeh.org" not in html


def test_names_from_result_files_stay_text_in_the_page(thr):
    evil = thr.assign(model=thr.model.where(thr.model != "AlexNet", synthetic.XSS_MODEL))
    html = file_html(plot.batch_size_vs_throughput(evil), INLINE, "t")
    assert synthetic.XSS_MODEL not in html  # Bokeh escapes < in the embedded JSON
    assert "&lt;script&gt;document.title" in html


# ---------------------------------------------------------------- pareto


def test_pareto_frontier_keeps_exactly_the_non_dominated_rows():
    df = pd.DataFrame({"model": list("abcdefg"),
                       "throughput": [1.0, 2.0, 3.0, 3.0, 4.0, np.nan, 2.0],
                       "accuracy": [0.9, 0.8, 0.7, 0.75, 0.5, 1.0, 0.8]})
    best = pareto_frontier(df)
    # c loses to d (same speed, less accurate); b and g tie exactly and both stay; f has no speed.
    assert list(best["model"]) == ["a", "b", "g", "d", "e"]


def test_pareto_frontier_brute_force_agreement():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.integers(0, 8, 60).astype(float), "y": rng.integers(0, 8, 60).astype(float)})
    best = set(pareto_frontier(df, "x", "y").index)
    for i, row in df.iterrows():
        dominated = ((df.x >= row.x) & (df.y >= row.y) & ((df.x > row.x) | (df.y > row.y))).any()
        assert (i in best) == (not dominated)


def test_pareto_frontier_lower_is_better_and_repeated_index_labels():
    df = pd.DataFrame({"latency_ms_median": [5.0, 2.0, 3.0], "accuracy": [0.9, 0.7, 0.6]},
                      index=["m", "m", "n"])  # the seed notebook indexes by model, so labels repeat
    best = pareto_frontier(df, "latency_ms_median", "accuracy", maximize_x=False)
    assert list(best["latency_ms_median"]) == [2.0, 5.0]


def test_pareto_frontier_missing_column_is_a_user_error():
    with pytest.raises(UserError, match="'accuracy'"):
        pareto_frontier(pd.DataFrame({"throughput": [1.0]}))


def test_roofline_draws_each_roof_once_and_points_where_the_records_say():
    rows = []
    for precision, peak in (("fp32", 50.0), ("fp16", 800.0), ("bf16", 800.0)):
        for batch, intensity, achieved in ((1, 20.0, 0.5), (64, 60.0, 8.0), (256, 80.0, 30.0)):
            rows.append(dict(model="ResNet-v1-50", device="NVIDIA H200", task="throughput", status="ok",
                             precision=precision, batch_size=batch, arithmetic_intensity=intensity,
                             achieved_tflops=achieved * (2 if precision != "fp32" else 1), peak_tflops=peak,
                             peak_bandwidth_gbs=4000.0, throughput=1000.0 * batch,
                             bound="compute" if intensity >= peak * 1e3 / 4000.0 else "memory"))
    fig = plot.roofline(pd.DataFrame(rows))
    roofs = [r for r in glyph_renderers(fig, "Line") if "peak_tflops" in r.data_source.data]
    assert sorted(label for label in legend_labels(fig) if label.startswith("roof")) == [
        "roof: fp16/bf16 800 TFLOP/s, 4,000 GB/s", "roof: fp32 50 TFLOP/s, 4,000 GB/s"]
    assert len(roofs) == 2
    for roof in roofs:
        xs, ys = list(roof.data_source.data["x"]), list(roof.data_source.data["y"])
        peak = roof.data_source.data["peak_tflops"][0]
        assert xs[1] == pytest.approx(peak * 1e3 / 4000.0)  # the ridge: bandwidth meets peak
        assert ys[0] == pytest.approx(xs[0] * 4.0) and ys[1] == ys[2] == peak
    fp32 = [r for r in glyph_renderers(fig, "Scatter") if r.data_source.data["precision"][0] == "fp32"][0]
    assert list(fp32.data_source.data["arithmetic_intensity"]) == [20.0, 60.0, 80.0]
    assert list(fp32.data_source.data["achieved_tflops"]) == [0.5, 8.0, 30.0]
    assert "@bound" in hover_text(fig) and "FLOP/byte" in hover_text(fig)


def test_roofline_without_intensity_names_the_column(thr):
    with pytest.raises(UserError, match="arithmetic_intensity"):
        plot.roofline(thr.drop(columns=[c for c in ("arithmetic_intensity",) if c in thr.columns]))


# ---------------------------------------------------------------- input pipeline and requests in flight

COMMITTED_PIPELINE = Path(__file__).resolve().parents[1] / "results" / "h200-pipeline-1"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> pd.DataFrame:
    """The H200's pipeline records (nvJPEG in one process; torchvision with 16 workers), loaded from a copy."""
    from dlmark.records.load import load_results

    folder = tmp_path_factory.mktemp("h200-pipeline-1")
    for path in COMMITTED_PIPELINE.glob("*.json"):
        shutil.copy(path, folder)
    return load_results(folder)


def test_pipeline_stages_draws_a_group_of_bars_per_configuration_on_a_log_axis(pipeline):
    failed = pipeline[pipeline.task == "pipeline"].iloc[:1].assign(status="oom", decoder="pil")
    fig = plot.pipeline_stages(pd.concat([pipeline, failed], ignore_index=True))
    assert isinstance(fig.x_scale, LogScale)
    factors = list(fig.y_range.factors)
    configs = list(dict.fromkeys(config for config, _ in factors))
    # One row per configuration; the failed record and the throughput record draw nothing.
    assert len(configs) == 2 and all("ResNet-v1-50: batch 256" in c for c in configs)
    nvjpeg, = (c for c in configs if "nvjpeg, 0 workers" in c)
    workers, = (c for c in configs if "torchvision, 16 workers" in c)
    stages = {c: [stage for config, stage in factors if config == c] for c in configs}
    # nvJPEG reads the file bytes itself: no copy stage, no bar for it.
    assert sorted(stages[nvjpeg]) == sorted(["decode", "transform", "loader", "model", "end to end"])
    assert sorted(stages[workers]) == sorted(["decode", "transform", "loader", "copy", "model", "end to end"])
    record = pipeline[(pipeline.task == "pipeline") & (pipeline.decoder == "nvjpeg")].iloc[0]
    bars = {(y[0], y[1]): x for r in glyph_renderers(fig, "HBar") for y, x in
            zip(r.data_source.data["y"], r.data_source.data["per_s"])}
    assert bars[(nvjpeg, "model")] == pytest.approx(record["stage_model_per_s"])
    assert bars[(nvjpeg, "end to end")] == pytest.approx(record["e2e_throughput"])
    assert "copy" in legend_labels(fig) and "bottleneck" in legend_labels(fig)


def test_pipeline_stages_marks_the_bottleneck_and_the_bound_on_end_to_end(pipeline):
    fig = plot.pipeline_stages(pipeline)
    outlined, = [r for r in glyph_renderers(fig, "HBar") if r.glyph.fill_alpha == 0]
    marked = dict(zip((y[0] for y in outlined.data_source.data["y"]), outlined.data_source.data["stage"]))
    assert len(marked) == 2 and set(marked.values()) == {"transform"}  # both records name the transform
    bound, = glyph_renderers(fig, "Scatter")
    by_config = dict(zip((y[0] for y in bound.data_source.data["y"]), bound.data_source.data["bound_per_s"]))
    nvjpeg = next(v for c, v in by_config.items() if "nvjpeg" in c)
    # In one process the stages take turns: 1 / (1/loader + 1/model), as docs/pipeline.md says (1,492).
    assert nvjpeg == pytest.approx(1 / (1 / 2452.7768713337678 + 1 / 3807.8577584252635))
    assert {y[1] for y in bound.data_source.data["y"]} == {"end to end"}
    assert "images/s" in hover_text(fig)
    assert "cdn.bokeh.org" not in file_html(fig, INLINE, "t")


def test_pipeline_stages_without_pipeline_records_says_so(thr):
    fig = plot.pipeline_stages(thr.assign(e2e_throughput=np.nan))
    assert plotted(fig, "Text", "text") == ["no pipeline records"]


def test_requests_in_flight_are_series_of_their_own():
    rows = [synthetic.int8_record("SqueezeNet-1.1", "openvino", batch, in_flight=n) for n in (1, 2) for batch in (1, 32)]
    fig = plot.batch_size_vs_throughput(records(rows))
    assert sorted(legend_labels(fig)) == ["SqueezeNet-1.1 (1 in flight)", "SqueezeNet-1.1 (2 in flight)"]


def _server_step(qps: float, p99: float, valid: bool, batches_in_flight: int) -> dict:
    return {"task": "serving", "scenario": "server", "model": "ResNet-v1-50", "device": GPU, "status": "ok",
            "backend": "pytorch", "precision": "fp16", "compile_mode": "default", "target_qps": qps,
            "qps_completed": qps, "latency_ms_p50": p99 / 2, "latency_ms_p99": p99, "valid": valid,
            "latency_bound_ms": 15.0, "batches_in_flight": batches_in_flight,
            "extra_config": {"scenario": "server", "batches_in_flight": batches_in_flight, "target_qps": qps}}


def test_latency_vs_load_draws_each_number_of_batches_in_flight_as_its_own_line():
    rows = [_server_step(qps, p99, p99 <= 15, n) for n in (1, 2) for qps, p99 in ((10_000, 11.0), (20_000, 30.0))]
    # A search's answer as records before 2026-12-03 wrote it: its batches in flight only in extra_config.
    rows.append({"task": "serving", "scenario": "server", "model": "ResNet-v1-50", "device": GPU, "status": "ok",
                 "backend": "pytorch", "precision": "fp16", "compile_mode": "default", "server_qps_at_bound": 10_000,
                 "latency_bound_ms": 15.0, "extra_config": {"scenario": "server", "batches_in_flight": 2}})
    frame = records(rows)
    frame["extra_config"] = [r["extra_config"] for r in rows]  # a dict, as load_results keeps it
    fig = plot.latency_vs_load(frame)
    assert sorted(legend_labels(fig)) == [f"ResNet-v1-50 ({label}) {p}" for label in
                                          ("1 batch in flight", "2 batches in flight") for p in ("p50", "p99")]
    lines = glyph_renderers(fig, "Line")
    p99_lines = {r.glyph.line_color: list(r.data_source.data["target_qps"]) for r in lines if r.glyph.line_dash == []}
    assert sorted(p99_lines.values()) == [[10_000, 20_000], [10_000, 20_000]]  # no line zig-zags between the two
    answer = [span for span in fig.center if type(span).__name__ == "Span" and span.dimension == "height"]
    two = next(item.renderers[0].glyph.line_color for legend in fig.legend for item in legend.items
               if item.label.value == "ResNet-v1-50 (2 batches in flight) p99")
    assert [(span.location, span.line_color) for span in answer] == [(10_000, two)]  # marked in its line's colour
    hollow = [r for r in glyph_renderers(fig, "Scatter") if r.glyph.fill_color == "white"]
    assert sorted(q for r in hollow for q in r.data_source.data["target_qps"]) == [20_000, 20_000]
