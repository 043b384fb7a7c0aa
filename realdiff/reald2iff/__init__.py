"""RealD²iff, a hierarchical clean-to-noisy depth diffusion model: model.py is the model read top
to bottom; config.py its settings, stages.py its optional sensor-texture, twin-registration and
edge-displacement stages, noiser.py the whole pipeline as a noise model, checkpoint.py its files,
train.py and distill.py how it is made."""
