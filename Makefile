# Two commands for a fresh clone: `make run` and `make test`.
# `make run` installs what measuring needs (dlmark and its dependencies: PyTorch, torchvision, timm...);
# `make test` adds the `test` extra (ONNX Runtime, OpenVINO, Ray, Selenium, Jupyter: gigabytes more).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the package's metadata changes; the stamps keep repeat runs fast.
STAMP := $(VENV)/.dlmark-installed
TEST_STAMP := $(VENV)/.dlmark-test-installed

.PHONY: run test setup setup-test clean

setup: $(STAMP)

setup-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[fast]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,fast]'
	touch $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/dlmark run quick --out runs

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
