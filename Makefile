# Two commands do everything on a fresh machine with python3 and make:
#   make run    check links.md, reports in reports/ (scripts/run: the same, with the
#               checker's own exit code; make itself can only exit 0 or 2)
#   make test   the whole test suite
#   make install  .venv with the package and its runtime dependencies only (no test extra)
#   make bench  the crawler against lychee on a loopback server farm (bench/run.py)
#   make eval   title/summary quality on ../shared/corpus/extraction
PY ?= python3
# VENV may be set from the environment (scripts/run and tests/test_workflow.py pass it on).
VENV ?= .venv
export VENV
BIN := $(VENV)/bin
# (named for the install mode: a venv installed before it was compat is installed again)
STAMP := $(VENV)/.installed-compat-stamp
TEST_STAMP := $(VENV)/.test-installed-compat-stamp
# The editable install as a path in a .pth file (compat), not setuptools' import hook for flat
# layouts, which imported pathlib, fnmatch and importlib.util into every start of Python in the
# venv: 19 ms of CPU, more than half of a bare start (a user's `pip install .` has no hook).
EDITABLE := --config-settings editable_mode=compat
ARGS ?=

.PHONY: run install test lint bench eval eval-kfold clean

# The package and what it needs to run: a daily check installs no test tools (playwright…).
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . $(EDITABLE)
	# Bytecode for the editable package, so every command starts fast even where
	# PYTHONDONTWRITEBYTECODE is set (stale .pyc files are recompiled by Python itself).
	$(BIN)/python -m compileall -q crawler
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]' $(EDITABLE)
	touch $(TEST_STAMP)

install: $(STAMP)

# make turns any failing recipe into its own exit code 2 ("Error 3" names the checker's code);
# scripts/run, which this calls, exits with the checker's code itself. A single command, so
# make runs it without a shell in between and a SIGTERM to make reaches the checker.
run: $(STAMP)
	scripts/run $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]' $(EDITABLE)
	$(BIN)/python bench/run.py $(ARGS)

# Title/summary quality of `crawler extract` on the shared corpus (skipped without ../shared),
# then its speed with one and two processes on the corpus plus four Wikipedia-sized pages
# (bench/wikipages.py writes them, about 1 MB each).
EVAL := ../shared/eval/extraction_eval.py
EVAL_CORPUS := ../shared/corpus/extraction/manifest.json
EVAL_PAGES := $${TMPDIR:-/tmp}/crawler-eval-pages
eval: $(TEST_STAMP)
	@# Bytecode as an install leaves it: with PYTHONDONTWRITEBYTECODE set, modules edited since
	@# would be compiled again by every timed start (a fifth of its start-up).
	@$(BIN)/python -m compileall -q crawler
	@if [ -f $(EVAL) ]; then \
	  $(PY) $(EVAL) --manifest $(EVAL_CORPUS) \
	    --cmd "$(BIN)/crawler extract" --batch 1000 --table reports/extraction_eval.tsv | tail -n 1; \
	  $(BIN)/python bench/wikipages.py $(EVAL_PAGES) --pages 4 --corpus $(EVAL_CORPUS) && \
	  for j in 1 2; do \
	    printf 'corpus + 4 MB pages, -j %s: ' $$j; \
	    $(PY) $(EVAL) --manifest $(EVAL_PAGES)/manifest.json --breakdown '' \
	      --cmd "$(BIN)/crawler extract -j $$j" --batch 1000 \
	      --table reports/extraction_eval_j$$j.tsv 2>/dev/null | tail -n 1; \
	  done; \
	else echo "eval: $(EVAL) not found; skipped"; fi

# Held-out figures: tuned on four folds of the corpus, scored on the fifth (bench/kfold.py).
eval-kfold: $(TEST_STAMP)
	$(BIN)/python bench/kfold.py

lint: $(TEST_STAMP)
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check crawler tests bench
	$(BIN)/ruff format --check crawler tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/*.json reports/*.md reports/*.html .pytest_cache
