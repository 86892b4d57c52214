# Two commands for a fresh clone: `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
JOBS   ?= 2
# one torch thread per kernel; progress bars off so executed pages stay clean
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
export PYTHONHASHSEED=0
export DLBOOK_PROGRESS=0
export PYDEVD_DISABLE_FILE_VALIDATION=1
# the library of this checkout wins over any installed copy (worktrees share one .venv)
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: book test test-fast bench sync clean pdf

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements.txt
	touch $@

book: $(VENV)/.installed
	$(BIN)/python tools/build_book.py --jobs $(JOBS)

# the whole book as one PDF, _build/latex/book.pdf: Sphinx's LaTeX builder and XeLaTeX from the
# executed cache of `make book` (run it first; nothing executes again: tools/build_pdf.py refuses a
# chapter missing from the cache); TeX from Debian's packages (tools/install_tex.sh)
pdf: $(VENV)/.installed
	bash tools/install_tex.sh
	$(BIN)/python tools/build_pdf.py

NBVAL := -n $(JOBS) --dist loadfile --nbval-cell-timeout=300

# everything CI checks; the book build is a no-op when nothing changed
test: book pdf
	bash tools/install_browser.sh
	# every chapter's reader notebook runs outside the repository in the reader's environment
	# (tests/test_reader_notebooks.py; DLBOOK_READER_NOTEBOOKS=fast runs the two fastest)
	DLBOOK_READER_NOTEBOOKS=$${DLBOOK_READER_NOTEBOOKS:-all} $(BIN)/python -m pytest -n $(JOBS) tests
	# re-executing each published notebook reproduces its text outputs (figures excepted), in the
	# reader's environment: a fresh venv with only `pip install` of the package (tools/reader_env.py),
	# as Colab and Binder run the generated notebooks (_build/colab/, tests/test_reader_notebooks.py)
	$(BIN)/python tools/reader_env.py >/dev/null
	JUPYTER_PATH="$$($(BIN)/python tools/reader_env.py)" $(BIN)/python -m pytest $(NBVAL) \
		--nbval --nbval-kernel-name dlbook-reader --nbval-sanitize-with tests/nbval_sanitize.cfg \
		_build/jupyter_execute/chapters/[0-9]*.ipynb

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow and not browser" tests

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/build_time.py

sync: $(VENV)/.installed
	$(BIN)/jupytext --sync chapters/[0-9]*.md

clean:
	rm -rf _build
