# Two commands do everything on a fresh machine with python3 and make:
#   make run    check links.md, reports in reports/
#   make test   the whole test suite
#   make bench  the crawler against lychee on a loopback server farm (bench/run.py)
#   make eval   title/summary quality on ../shared/corpus/extraction
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test lint bench eval clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# Bytecode for the editable package, so every command starts fast even where
	# PYTHONDONTWRITEBYTECODE is set (stale .pyc files are recompiled by Python itself).
	$(BIN)/python -m compileall -q crawler
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/crawler check links.md --report-dir reports $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py $(ARGS)

# Title/summary quality of `crawler extract` on the shared corpus (skipped without ../shared).
EVAL := ../shared/eval/extraction_eval.py
eval: $(STAMP)
	@if [ -f $(EVAL) ]; then \
	  $(PY) $(EVAL) --manifest ../shared/corpus/extraction/manifest.json \
	    --cmd "$(BIN)/crawler extract" --batch 1000 --table reports/extraction_eval.tsv | tail -n 1; \
	else echo "eval: $(EVAL) not found; skipped"; fi

lint: $(STAMP)
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check crawler tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/*.json reports/*.md reports/*.html .pytest_cache
