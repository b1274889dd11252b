# Everyday entry points: make demo, make test, make lint, make lab, make bench.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test lint lab bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt: the versions the tests last passed with, so a new release upstream
	# cannot break a clean clone (cryptography 51's DSA deprecation once did)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,notebooks]'
	# bytecode for the editable package, as pip writes for installed ones: where
	# PYTHONDONTWRITEBYTECODE is set (this machine, many containers) every start recompiled it
	$(PY) -m compileall -q scanner
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m scanner demo --out results/demo

# The HTML report is tested in a real headless browser: Debian's chromium.
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }

test: $(STAMP) browser
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check scanner tests benchmarks
	$(PY) -m mypy scanner

lab: $(STAMP)
	$(PY) -m scanner lab serve --profile mixed --domains 200 --seed 1 --dir results/lab

# The national-scale benchmark (benchmarks/README.md): survey, CPU floor and its layers, peers (the peers'
# Debian packages are installed by peers.py with apt-get, sslyze into benchmarks/.peers-venv).
bench: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,notebooks,bench]'
	$(PY) benchmarks/survey.py --domains 345000
	$(PY) benchmarks/floor.py --domains 345000 --rounds 3
	$(PY) benchmarks/layers.py --domains 345000 --rounds 3
	$(PY) benchmarks/peers.py
	$(PY) benchmarks/peers.py --only openssl --rounds 3

clean:
	rm -rf $(VENV) results/demo results/lab
