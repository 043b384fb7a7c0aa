"""realdiff: RealD²iff, the clean-to-noisy depth diffusion model (arrives with issues 3 and 4)."""
