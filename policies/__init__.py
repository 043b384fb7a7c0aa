"""policies: a diffusion policy trained on (noisified) depth from simgen stores, and judged in
closed loop under any sensor model (model, data, train, sensors, evaluate, cli)."""
