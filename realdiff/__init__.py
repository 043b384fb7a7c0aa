"""realdiff: real versus simulated depth. Pairing real captures with digital-twin renders
(`realdiff pair`), depth noise models (realdiff.sensors: `load_noiser`, `as_noiser`), realism
metrics and the benchmark (`realdiff eval`), RealD²iff, the clean-to-noisy depth diffusion model
(realdiff.reald2iff: `realdiff train`), and `realdiff noisify` for simgen stores."""

from realdiff.sensors import as_noiser, load_noiser

__all__ = ["as_noiser", "load_noiser"]
