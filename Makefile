# robust-nb: the whole set-up is `make book` and `make test` (both create .venv when it is missing).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.robust-nb-installed
export ROBUST_NB_PRESET ?= tiny
# nbdev_test runs one notebook per core: one torch thread each, or they fight over the cores.
NB_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONWARNINGS=ignore::DeprecationWarning

.PHONY: install test book bench clean browser data

$(STAMP): pyproject.toml settings.ini constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	@touch $(STAMP)

install: $(STAMP)

# `make test` executes every notebook once, as nbdev_test does (execnb, cells flagged with settings.ini's
# tst_flags skipped), and that one execution is also the book the browser test reads; then pytest.
test: $(STAMP) browser data
	$(NB_ENV) $(PY) tools/build_book.py --out _book
	$(PY) -m pytest tests/

# Chromium for the browser test: Debian's package, installed when missing and possible (else the test skips).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
	  && echo "installed chromium for the browser test" || echo "chromium not installed: the browser test will skip"; }

# Fashion-MNIST for the `small` preset and the real-data tests: Debian's package (four IDX .gz files under
# /usr/share/datasets/fashion-mnist/), installed when missing and possible (else those cells and tests say so and skip).
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@test -f $(FMNIST) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } \
	  && test -f $(FMNIST) && echo "installed dataset-fashion-mnist" || echo "dataset-fashion-mnist not installed: Fashion-MNIST cells and tests will skip"; }

book: $(STAMP) data
	$(PY) tools/build_book.py --out _book

bench: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) bench/run_all.py

clean:
	rm -rf _book _docs .pytest_cache
