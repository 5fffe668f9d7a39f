# Every target creates .venv when missing and installs the project into it.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Test processes (pytest-xdist); CI has 2 cores.
TEST_WORKERS ?= 2

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# pip (not uv/poetry): torch==2.14.1 and torchvision==0.29.1 come from this machine's disk.
# pyproject.toml states ranges; constraints.txt pins the exact set installed here.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hfs demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
