# The README's commands. Each creates .venv and installs the project into it when missing
# (or when pyproject.toml changed), so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/moving_shapes
PYTEST_ARGS ?=

.PHONY: demo plan-demo plan-demo-pusht test test-fast bench lint clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

DEMO_OUT ?= outputs/quickstart

DEMO_STAGES ?= outputs/demo_stages.tsv
STAGE = $(BIN)/python tools/stages.py run $(DEMO_STAGES)

demo: $(STAMP)
	@mkdir -p $(dir $(DEMO_STAGES)) && rm -f $(DEMO_STAGES)
	test -f $(DEMO_DATA)/manifest.csv || $(STAGE) dataset -- $(BIN)/jepa data synth moving-shapes --out $(DEMO_DATA) --videos 2000 --seed 0
	$(STAGE) "data check" -- $(BIN)/jepa data check $(DEMO_DATA)/train.csv --num-frames 8 --frame-step 3
	$(STAGE) pretraining -- $(BIN)/jepa fit --config configs/pretrain/quickstart.yaml
	$(STAGE) export -- $(BIN)/jepa export $(DEMO_OUT) --out $(DEMO_OUT)/encoder.pt
	$(STAGE) probes -- $(BIN)/jepa probe --encoder $(DEMO_OUT)/encoder.pt --train $(DEMO_DATA)/train.csv --val $(DEMO_DATA)/val.csv \
		--target direction shape --head linear attentive --seeds 3 --out $(DEMO_OUT)/probe
	@echo "logs:        $(DEMO_OUT)/csv (CSV), $(DEMO_OUT)/wandb (offline; 'wandb sync' to upload)"
	@echo "checkpoints: $(DEMO_OUT)/checkpoints (last*.ckpt, best-*.ckpt; resume with --ckpt_path last)"
	@echo "encoder:     $(DEMO_OUT)/encoder.pt  (python: jepa.load_encoder('$(DEMO_OUT)/encoder.pt'))"
	@echo "probes:      $(DEMO_OUT)/probe/probe.md, probe.json, probe.png (linear + attentive vs random-init and pixels)"
	@$(BIN)/python tools/stages.py report $(DEMO_STAGES)

TR_DATA ?= data/two_rooms_random
TR_OUT ?= outputs/two_rooms_random

# The headline protocol, eb-jepa: a new wall and door every episode, in collect and in plan.
plan-demo: $(STAMP)
	test -f $(TR_DATA)/manifest.csv || $(BIN)/jepa data collect two-rooms --protocol eb-jepa --episodes 1000 --steps 100 --out $(TR_DATA) --seed 0
	$(BIN)/jepa fit --config configs/world_model/two_rooms_random.yaml --data.init_args.train $(TR_DATA)/train.csv \
		--data.init_args.val $(TR_DATA)/val.csv --trainer.default_root_dir $(TR_OUT)
	$(BIN)/jepa plan --world-model $(TR_OUT) --protocol eb-jepa --seed 3 --replan-every 1 --out $(TR_OUT)/plan

PT_DATA ?= data/pusht
PT_OUT ?= outputs/pusht

plan-demo-pusht: $(STAMP)
	test -f $(PT_DATA)/manifest.csv || $(BIN)/jepa data collect pusht --policy push --episodes 1000 --steps 100 --out $(PT_DATA) --seed 0
	$(BIN)/jepa fit --config configs/world_model/pusht.yaml
	$(BIN)/jepa plan --world-model $(PT_OUT) --protocol swm --trajectories $(PT_DATA)/val.csv --seed 3 --horizon 5 --oracle-samples 32 --oracle-iterations 3 --out $(PT_OUT)/plan

# The report page's browser test needs Chromium: Debian's, installed where apt can (else it is skipped).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "chromium could not be installed here: the report page's browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/jepa bench data
	$(BIN)/jepa bench train
	$(BIN)/jepa bench plan
	$(BIN)/jepa bench probe
	$(BIN)/jepa bench soak

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data/moving_shapes data/two_rooms .pytest_cache
