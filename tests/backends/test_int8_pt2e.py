"""int8 on PyTorch through PT2E (torch.export, X86InductorQuantizer): agreement, and a broken calibration caught."""
import pytest

from dlmark.backends import int8, seeded_input
from dlmark.backends.precision_check import AGREEMENT_BATCH, AGREEMENT_SEED, compare_logits
from dlmark.errors import UserError


@pytest.mark.slow
def test_pytorch_pt2e_agrees_and_a_broken_calibration_does_not():
    torch = pytest.importorskip("torch")
    try:
        int8.pt2e_api()
    except UserError:
        pytest.skip("the PT2E quantizer is not installed (pip install -e '.[pytorch-int8]')")
    from tests.fixtures.runtime_models import tiny

    x = torch.from_numpy(seeded_input((AGREEMENT_BATCH, 3, 32, 32), AGREEMENT_SEED))
    with torch.no_grad():
        reference = tiny().eval()(x).numpy()
    results = {}
    for source in ("generated", "zeros"):
        # Eager (not compiled): the converted graph computes the same quantized arithmetic in
        # reference form; compiling it is the runner's step and costs minutes on two cores.
        model, fields = int8.quantize_pytorch(tiny(), (3, 32, 32), int8.Calibration(samples=16, source=source),
                                              compile_model=False)
        assert "X86InductorQuantizer" in fields["quantizer"] and fields["calibration_source"] == source
        with torch.no_grad():
            results[source] = compare_logits(reference, model(x).numpy(), int8.INT8_TOLERANCE, "pt2e vs fp32")
    assert results["generated"]["agreement_ok"] is True
    assert results["zeros"]["agreement_ok"] is False
