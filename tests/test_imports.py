"""import dlmark, loading results and plotting never import torch."""
import subprocess
import sys


def test_loading_results_does_not_import_torch(tmp_path):
    code = (
        "import sys, dlmark\n"
        "dlmark.benchmark.load_results(sys.argv[1])\n"
        "import dlmark.records.schema, dlmark.records.store, dlmark.run.plan, dlmark.measure.devices, dlmark.run.driver\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(tmp_path / "*.json")], check=True)
