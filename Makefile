# Two commands on a fresh machine: `make train`, `make test`. Both are idempotent:
# the venv is rebuilt only when requirements.txt changes, the dataset only when missing.

SHELL := /bin/bash
# The first Python 3.11/3.10/3.9 on PATH; override with `make PYTHON=/path/to/python3.11`.
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9 python3 python; do command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
DATA := datasets/synthetic/dataset.json
MODEL_DIR ?= runs/synthetic
PYTEST_ARGS ?=

.PHONY: train test lint format bench tensorboard data venv clean

train: $(STAMP) $(DATA)
	$(VPY) train.py --gin_file=configs/synthetic.gin --model_dir=$(MODEL_DIR)

test: $(STAMP) $(DATA)
	$(VPY) -m ruff check .
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(STAMP)
	$(VPY) -m ruff format .
	$(VPY) -m ruff check --fix .

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

venv: $(STAMP)
data: $(DATA)

$(STAMP): requirements.txt
	@test -n "$(PYTHON)" || { echo "error: no python3 found on PATH; this project needs Python 3.9-3.11 (TensorFlow 2.15)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; ok = (3, 9) <= sys.version_info[:2] <= (3, 11); sys.exit(0 if ok else "error: found Python %s at %s; this project needs Python 3.9-3.11 (TensorFlow 2.15 has no wheels for it); run make PYTHON=/path/to/python3.11" % (sys.version.split()[0], sys.executable))'
	@test -x $(VPY) && $(VPY) -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@touch $@

$(DATA): | $(STAMP)
	$(VPY) -m data.synthetic --output_dir=$(dir $(DATA))

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis
