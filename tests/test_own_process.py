"""The `own_process` mark (tests/conftest.py): such a test runs in a pytest process of its own."""
import os

import pytest


@pytest.mark.own_process
def test_an_own_process_test_runs_in_a_child_pytest(request):
    # Only the child has the variable, set to this test's node id; the suite's process has none.
    assert os.environ.get("DLMARK_TEST_OWN_PROCESS") == request.node.nodeid


@pytest.mark.own_process
def test_a_skip_in_the_child_is_a_skip_here():
    pytest.skip("skipped in the child")
