"""The serving summary's rows: generated and image samples are configurations of their own."""
from dlmark.analysis.serving import serving_rows, shown_columns


def _record(**extra):
    return {"task": "serving", "status": "ok", "valid": True, "model": "m", "device": "cpu", "backend": "pytorch",
            "precision": "fp32", "layout": "nchw", "scenario": "offline", "samples_per_s": 100.0,
            "extra_config": {"scenario": "offline", **extra}}


def test_image_samples_are_a_row_of_their_own_labelled_by_input_and_decoder():
    rows = serving_rows([_record(), _record(input="images:/data/imagenet/val/", decoder="torchvision", images=256),
                         _record(input="images", decoder="pil", images=64)])
    assert [row["samples"] for row in rows] == ["generated", "images:val (torchvision)", "images (pil)"]
    assert all(row["offline"] == "100" for row in rows)


def _server_answer(qps, **settings):
    record = _record(**settings)
    record.update(scenario="server", server_qps_at_bound=qps, latency_bound_ms=15.0, latency_ms_p99=11.5)
    record["extra_config"]["scenario"] = "server"
    return record


def test_the_best_server_answer_is_shown_with_the_batcher_that_held_it():
    # One configuration searched with one and with two batches in flight: the row keeps the
    # larger answer and says how it was batched (older records keep the settings in extra_config).
    one = _server_answer(21405.5, max_batch=128, max_queue_delay_ms=4.0, batches_in_flight=1)
    two = _server_answer(23492.5, max_batch=128, max_queue_delay_ms=4.0)
    two["batches_in_flight"] = 2  # the answer's own field wins over extra_config
    rows = serving_rows([one, two, _record()])
    assert len(rows) == 1
    assert rows[0]["server"].startswith("23,492.5 at p99 <= 15")
    assert rows[0]["server_batcher"] == "<= 128 within 4 ms, 2 in flight"
    assert ("server_batcher", "Server batcher") in shown_columns(rows)
    assert ("server_batcher", "Server batcher") not in shown_columns(serving_rows([_record()]))


def test_threads_and_layout_tell_rows_apart_and_show_only_when_they_differ():
    rows = serving_rows([_record(), {**_record(), "threads": 2}, {**_record(), "layout": "channels_last"}])
    assert len(rows) == 3
    columns = [key for key, _ in shown_columns(rows)]
    assert columns.index("layout") == columns.index("precision") + 1 and "threads" in columns
    same = serving_rows([_record(), {**_record(), "precision": "int8"}])
    assert not {"layout", "threads"} & {key for key, _ in shown_columns(same)}
