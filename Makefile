# Two commands on a fresh machine with Python 3.11: `make data` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
N ?= 200000
# `make bench ENGINE=ray RAY_CPUS=2`: the stages on a loopback Ray cluster (README, "Running on Ray").
ENGINE ?= local
RAY_CPUS ?= 2
# Stages call the `abstracts` console script: put the project's venv first on PATH.
export PATH := $(BIN):$(PATH)
# Never report usage to anyone: DVC (also off in .dvc/config), GX and the HF clients.
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: data test lint bench mutants clean-venv

# uv installs the same pins as pip from the same registry (PyPI), downloading in parallel: a
# fresh venv installs in a fraction of pip's time (benchmarks/RESULTS.md). Unlike pip, uv
# leaves the bytecode to the first import, and where PYTHONDONTWRITEBYTECODE is set (as on
# this workplace's machines) no import ever writes it: every process would compile GX, DVC
# and the rest from source again. `--compile-bytecode` compiles once, at install.
# One install per target: the dev target installs the package and its dev extras in one uv
# run (one resolve, one bytecode pass), not a second run on top of `.installed`.
define venv_with_uv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q --disable-pip-version-check 'uv>=0.13,<0.14'
endef

$(VENV)/.installed: pyproject.toml
	$(venv_with_uv)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(venv_with_uv)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	$(BIN)/abstracts plots-template --out .dvc/plots/offline.html
	# The dev extras include the package: `make data` after this needs no second install.
	touch $(VENV)/.installed $@

## data: build, validate and write release/ and reports/ (dvc repro)
data: $(VENV)/.installed
	$(BIN)/dvc repro

## lint: ruff, mypy and the CI workflow (its schema; actionlint too where installed)
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check pipeline tests benchmarks tools
	$(BIN)/ruff format --check pipeline tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@if command -v actionlint >/dev/null; then actionlint .github/workflows/*.yml; \
	else echo "lint: actionlint not installed (pip install '.[actionlint]' where GitHub is reachable); schema checked only"; fi

## test: lint, then every test, one worker per core (pytest-xdist; tests/conftest.py groups the modules)
test: lint
	$(BIN)/pytest -n auto --dist loadscope --no-loadscope-reorder

$(VENV)/.installed-ray: $(VENV)/.installed
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[ray]'
	touch $@

## bench: benchmark the pipeline on N generated abstracts (default 200000; ENGINE=ray on Ray; SEEDS=10: the seeds 10 times)
bench: $(VENV)/.installed $(if $(filter ray,$(ENGINE)),$(VENV)/.installed-ray)
	$(BIN)/python -m benchmarks.bench --docs $(N) --engine $(ENGINE) --ray-cpus $(RAY_CPUS) $(if $(SEEDS),--seeds-times $(SEEDS))

## mutants: mutation check of the modules whose constants make the release (reports/mutants.json)
mutants: $(VENV)/.installed-dev
	$(BIN)/python tools/mutants.py

clean-venv:
	rm -rf $(VENV)
