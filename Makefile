# Two commands do all the set-up on a fresh machine:
#   make demo   bake a service with the defaults, start it, and show it answering
#   make test   install what the tests need and run them all
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Marks the install of the current requirements. Not $(PY) itself: that is a symlink to the
# shared interpreter, whose time every other virtualenv's install would move.
INSTALLED := $(VENV)/.installed

.PHONY: demo test venv services clean

$(INSTALLED): requirements/test.txt chassis/pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv venv --quiet --allow-existing --python 3.11 $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet -r requirements/test.txt
	@touch $(INSTALLED)

venv: $(INSTALLED)

# NATS, RabbitMQ and PostgreSQL on loopback, installed and started when they are not already running.
services: $(INSTALLED)
	bash scripts/services.sh $(VENV)

demo: $(INSTALLED)
	$(PY) scripts/demo.py

test: services
	bash scripts/install-stack.sh
	cd chassis && ../$(PY) -m pytest -n 2
	$(PY) -m pytest -n 2 --dist loadgroup tests

clean:
	rm -rf $(VENV) build
