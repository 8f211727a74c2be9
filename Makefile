# The two commands a new user needs: `make demo` and `make test`. Every target builds .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
SYSTEM_LIBS := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers

.PHONY: demo demo-dsec test bench lint system-libs clean-runs

# torch first and pinned (a bare requirement pulls a multi-GB CUDA build); then the project with its
# extras; then spikingjelly without its declared torchvision/torchaudio (unused here, see README).
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-libs
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e '.[dev,bench]'
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	@touch $(STAMP)

# open3d needs libusb; its headless renderer needs Vulkan (Mesa's software driver on a CPU machine).
system-libs:
	@missing=""; for lib in $(SYSTEM_LIBS); do dpkg -s $$lib >/dev/null 2>&1 || missing="$$missing $$lib"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system libraries:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "please install the system libraries:$$missing (e.g. sudo apt-get install$$missing)"; \
	  fi; \
	fi

demo: $(STAMP)
	$(PY) -m stereo.demo

# The DSEC chain on the synthetic DSEC-layout recording, ending in a benchmark submission.
demo-dsec: $(STAMP)
	$(PY) -m stereo.demo --dataset dsec

# One thread per process: the DDP tests start several processes on small CPUs.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-runs:
	rm -rf runs data
