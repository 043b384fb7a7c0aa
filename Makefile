# Two commands do everything on a fresh machine:
#   make demo   install, render a small pick dataset, add sensor-like depth, summarise it and
#               write previews to out/
#   make test   install with test extras, check lint and format (ruff), run the test suite
# `make test-slow` runs the tests marked slow (kills and resumes, end-to-end runs), `make pipeline`
# the six stages (pair, train the noiser, render, noisify, train a policy, evaluate it) end to end
# on small defaults, `make bench` the throughput benchmarks.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench pipeline setup clean

setup:
	./scripts/setup.sh

demo: setup
	$(BIN)/simgen render --task pick --episodes 20 --out out/pick.zarr --workers 2
	$(BIN)/realdiff noisify out/pick.zarr --overwrite \
		--noiser front=reald2iff-texture,wrist=structured-light --range-scale wrist=0.1
	$(BIN)/simgen info out/pick.zarr
	$(BIN)/simgen preview out/pick.zarr --episode 0 --out out/pick_ep0.mp4
	$(BIN)/simgen preview out/pick.zarr --episode 0 --out out/pick_ep0.png

test:
	./scripts/setup.sh test
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/python -m pytest -q -m "not slow"

test-slow:
	./scripts/setup.sh test
	$(BIN)/python -m pytest -q -m slow

pipeline: setup
	./scripts/pipeline.sh

bench: setup
	$(BIN)/python bench/render_throughput.py
	$(BIN)/python bench/noisify_throughput.py

clean:
	rm -rf out
