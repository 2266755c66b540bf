# Two commands on a fresh machine: `make train`, `make test`. Both are idempotent:
# the venv is rebuilt only when requirements.txt changes, the dataset only when missing.

SHELL := /bin/bash
# The first Python 3.11/3.10/3.9 on PATH; override with `make PYTHON=/path/to/python3.11`.
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9 python3 python; do command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DATA := datasets/synthetic/dataset.json
# `make train CONFIG=configs/classification.gin [MODEL_DIR=runs/x] [GIN_PARAM='TRAIN_STEPS = 100']`:
# the config's synthetic dataset is written first if it is one of ours and missing;
# an empty MODEL_DIR means the config's own; GIN_PARAM is one binding (--gin_param).
# ARGS: more train.py flags, appended as written, e.g. ARGS="--gin_param='SEED = 1' --verbose"
# (tests/test_docs.py runs the documented `make train` with ARGS=--gin_file=tests/tiny.gin).
CONFIG ?= configs/synthetic.gin
MODEL_DIR ?=
GIN_PARAM ?=
ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist), one test file each at a time: the suite is mostly TensorFlow
# subprocesses and imports, so two halve its wall time on 2 cores. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
# A make value as one single-quoted shell word.
shell_quote = '$(subst ','\'',$(1))'

.PHONY: train test lint format bench tensorboard data venv clean

train: $(STAMP)
	$(VPY) -m data.synthetic --for_config=$(CONFIG)
	$(VPY) train.py --gin_file=$(CONFIG)$(if $(MODEL_DIR), --model_dir=$(MODEL_DIR))$(if $(GIN_PARAM), --gin_param=$(call shell_quote,$(GIN_PARAM)))$(if $(ARGS), $(ARGS))

test: $(STAMP) $(DATA)
	$(VPY) -m ruff check .
	$(VPY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(STAMP)
	$(VPY) -m ruff format .
	$(VPY) -m ruff check --fix .

# Every benchmark, each one's output in one report (bench/results.md, not committed).
# bench/growth.py runs inside bench/train.py.
BENCHMARKS = $(filter-out bench/growth.py,$(wildcard bench/*.py))
bench: $(STAMP)
	@set -o pipefail; { echo "# make bench, $$(date -u '+%F %H:%M UTC'), $$(uname -n), $$(nproc) cores"; \
	  for b in $(BENCHMARKS); do echo; echo "## $$b"; echo; echo '```'; $(VPY) $$b || exit 1; echo '```'; done; \
	} 2>&1 | tee bench/results.md

# TensorBoard on http://127.0.0.1:6006, this machine only (TensorBoard's own default).
# `make tensorboard HOST=0.0.0.0` listens on every interface: anyone who can reach this
# machine then sees every run under runs/ (configs, absolute paths, validation images),
# with no login. On a remote machine prefer `ssh -L 6006:127.0.0.1:6006 host`.
HOST ?= 127.0.0.1
tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --host $(HOST)

venv: $(STAMP)
data: $(DATA)

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3 found on PATH; this project needs Python 3.9-3.11 (TensorFlow 2.15)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; ok = (3, 9) <= sys.version_info[:2] <= (3, 11); sys.exit(0 if ok else "error: found Python %s at %s; this project needs Python 3.9-3.11 (TensorFlow 2.15 has no wheels for it); run make PYTHON=/path/to/python3.11" % (sys.version.split()[0], sys.executable))'
	@test -x $(VPY) && $(VPY) -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@# The project itself, editable: `core`, `data`, ... import from any folder (tools/, bench/, notebooks).
	$(VPY) -m pip install --disable-pip-version-check --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(DATA): | $(STAMP)
	$(VPY) -m data.synthetic --output_dir=$(dir $(DATA))

# `make voc-like-data`: the VOC-like dataset, each part written when missing: the PASCAL
# VOC tree of variable-size JPEGs (datasets/voc_like/VOCdevkit/VOC2012), then its records
# from DeepLab's own converter (datasets/voc_like/deeplab/) and from tools/build_tfrecords.py
# (datasets/voc_like/template/). Each converter command is echoed as it runs. `make train
# CONFIG=configs/voc_like.gin` (or voc_like_deeplab.gin) writes what that config needs itself.
.PHONY: voc-like-data
voc-like-data: $(STAMP)
	$(VPY) -m data.synthetic --for_config=configs/voc_like_deeplab.gin
	$(VPY) -m data.synthetic --for_config=configs/voc_like.gin

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis
