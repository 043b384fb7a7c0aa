# Two commands do everything on a fresh machine:
#   make demo   install, render a small pick dataset, add sensor-like depth, summarise it and
#               write previews to out/
#   make test   install with test extras and run the test suite
# and `make pipeline` runs the six stages (pair, train the noiser, render, noisify, train a
# policy, evaluate it) end to end on small defaults.
VENV ?= .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: demo test bench pipeline setup clean

setup:
	./scripts/setup.sh

demo: setup
	$(BIN)/simgen render --task pick --episodes 20 --out out/pick.zarr --workers 2
	$(BIN)/realdiff noisify out/pick.zarr --overwrite
	$(BIN)/simgen info out/pick.zarr
	$(BIN)/simgen preview out/pick.zarr --episode 0 --out out/pick_ep0.mp4
	$(BIN)/simgen preview out/pick.zarr --episode 0 --out out/pick_ep0.png

test:
	./scripts/setup.sh test
	$(BIN)/python -m pytest -q

pipeline: setup
	./scripts/pipeline.sh

bench: setup
	$(BIN)/python bench/render_throughput.py
	$(BIN)/python bench/noisify_throughput.py

clean:
	rm -rf out
