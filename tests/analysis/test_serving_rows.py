"""The serving summary's rows: generated and image samples are configurations of their own."""
from dlmark.analysis.serving import serving_rows


def _record(**extra):
    return {"task": "serving", "status": "ok", "valid": True, "model": "m", "device": "cpu", "backend": "pytorch",
            "precision": "fp32", "layout": "nchw", "scenario": "offline", "samples_per_s": 100.0,
            "extra_config": {"scenario": "offline", **extra}}


def test_image_samples_are_a_row_of_their_own_labelled_by_input_and_decoder():
    rows = serving_rows([_record(), _record(input="images:/data/imagenet/val/", decoder="torchvision", images=256),
                         _record(input="images", decoder="pil", images=64)])
    assert [row["samples"] for row in rows] == ["generated", "images:val (torchvision)", "images (pil)"]
    assert all(row["offline"] == "100" for row in rows)
