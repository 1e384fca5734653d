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


@pytest.mark.slow
def test_a_module_called_at_several_places_quantizes_as_resnets_do():
    # torchvision's ResNet blocks call one ReLU after a convolution and again after the residual
    # add; X86InductorQuantizer's fusion refused that (ResNet-v1-50, results/cpu-tables-3/int8).
    torch = pytest.importorskip("torch")
    try:
        int8.pt2e_api()
    except UserError:
        pytest.skip("the PT2E quantizer is not installed (pip install -e '.[pytorch-int8]')")
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

        def forward(self, x):
            y = self.relu(self.conv1(x))
            return self.head(self.relu(self.conv2(y) + y))

    torch.manual_seed(0)
    block = Block().eval()
    x = torch.from_numpy(seeded_input((AGREEMENT_BATCH, 3, 16, 16), AGREEMENT_SEED))
    with torch.no_grad():
        reference = block(x).numpy()
    model, _ = int8.quantize_pytorch(block, (3, 16, 16), int8.Calibration(samples=16), compile_model=False)
    with torch.no_grad():
        agreement = compare_logits(reference, model(x).numpy(), int8.INT8_TOLERANCE, "pt2e vs fp32")
    assert agreement["agreement_ok"] is True
