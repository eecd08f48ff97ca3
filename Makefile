# Two entry points: `make app` (dashboard on 127.0.0.1:8501) and `make test` (whole suite).
# Both create .venv and install the project when it is missing or pyproject.toml changed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: app test install clean gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,hf]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/alto app --host $(HOST) --port $(PORT)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# Pure-Python wheels the training path needs beyond a GPU image's torch/numpy/pandas/scikit-learn:
# carry .gpu-wheels/ to a GPU machine for `python -m alto.gpu_check` (its --help says how).
GPU_WHEELS = 'sqlite-utils>=3.36,<4' click click-default-group pluggy python-dateutil six sqlite-fts4 tabulate
gpu-wheels: $(STAMP)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu-wheels $(GPU_WHEELS)

