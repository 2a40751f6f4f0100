# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup test lint demo bench align align-layouts law-check averaging-check upstream mutate docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned and installed first: it is the parity target, and an unpinned
# torch requirement could pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports

test: setup lint
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile

demo: setup
	$(BIN)/lrkit demo

bench: setup
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/curve.py
	$(BIN)/python benchmarks/optimizer_update.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/component_overhead.py
	$(BIN)/python benchmarks/bounded_tools.py
	$(BIN)/python benchmarks/checkpoint.py
	$(BIN)/python benchmarks/law_tune.py

# The full alignment matrix (lrkit vs PyTorch's own schedulers, loss for loss), plus 3 random cases.
align: setup
	$(BIN)/lrkit align --random 3 --seed 0

# Every parallel layout (InfiniTrain's scenario matrix) at 8 ranks, gpt2 and llama3, both backends.
align-layouts: setup
	$(BIN)/lrkit align --layouts

# The loss-law evidence (docs/loss-laws.md): 8 runs of the tiny GPT-2 with a shuffled sampler, the annealing law
# (decay fitted) fitted on two, the other schedules predicted and the tuned one trained; prints the table (22 min
# from nothing on 2 idle cores; exits 1 while a goal is not met). Finished runs in runs/law-check are reused.
# The run-to-run noise and the criterion it allows: LAW_CHECK_FLAGS="--noise-seeds 1,2" (6 more runs, 15 min more).
# The multi-power law on the same runs: LAW_CHECK_FLAGS="--form mpl".
# Another fit of the same runs: make law-check LAW_CHECK_FLAGS="--fit-on constant,cosine,wsd-20%-1-sqrt".
# Several fits of the same runs side by side: LAW_CHECK_FLAGS="--compare-fits 'constant,cosine;constant,wsd-20%-1-sqrt'".
law-check: setup
	$(BIN)/python scripts/law_check.py --out runs/law-check $(LAW_CHECK_FLAGS)

# PyTorch's and transformers' own scheduler tests, with only their imports swapped to lrkit.
# The test files are public and stay out of the repo; pass their paths:
#   make upstream TORCH_TESTS=pytorch/test/optim/test_lrscheduler.py \
#     HF_TESTS="transformers/tests/optimization/test_optimization.py transformers/tests/optimization/test_greedy_lr.py"
upstream: setup
	$(BIN)/python scripts/upstream_suites.py $(if $(TORCH_TESTS),--torch $(TORCH_TESTS)) \
		$(if $(HF_TESTS),--transformers $(HF_TESTS))

# Mutation testing of the pure and state layers ([tool.mutmut] in pyproject.toml), on demand, not in make test.
# It has its own venv without lrkit installed: mutmut's copy in mutants/ must be the lrkit that is imported.
# It runs in a scratch copy, .mutate/. MODULE narrows it to one or more modules (only theirs are generated):
#   make mutate MODULE=src/lrkit/schedules/shapes.py
#   make mutate MODULE=lrkit.schedulers.base MUTATE_CHILDREN=1 MUTANTS='lrkit.schedulers.base.x_short*'
MUTATE_VENV := .venv-mutate
MUTATE_CHILDREN ?= 2
$(MUTATE_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(MUTATE_VENV)
	$(MUTATE_VENV)/bin/python -m pip install -q --upgrade pip
	$(MUTATE_VENV)/bin/python -m pip install -q torch==2.13.0
	$(MUTATE_VENV)/bin/python -m pip install -q numpy 'transformers>=4.45' 'pytest>=8' 'mutmut==3.8.1'
	touch $@

mutate: $(MUTATE_VENV)/.installed
	$(MUTATE_VENV)/bin/python scripts/mutate.py --children $(MUTATE_CHILDREN) \
		--mutmut $(abspath $(MUTATE_VENV))/bin/mutmut $(MODULE) $(if $(MUTANTS),--mutants $(MUTANTS)) \
		$(if $(MUTATE_WORK),--work $(MUTATE_WORK))

# Weight averaging as a cooldown (issue 17), on demand: WSD with a 20% decay, a constant LR with --ema and
# --average-last, and both; 3 runs of 1000 updates of the tiny model, 2 at a time, one thread each (its wall time is not measured yet).
# The Markdown table goes to runs/averaging-check/averaging_check.md (docs/trainer.md, "Weight averaging").
averaging-check: setup
	OMP_NUM_THREADS=1 $(BIN)/python scripts/averaging_check.py $(AVERAGING_CHECK_FLAGS)

# The user guide (docs/*.md) and the API reference from the docstrings, into site/.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
