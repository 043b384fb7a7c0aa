"""realdiff: real versus simulated depth. Pairing real captures with digital-twin renders
(`realdiff pair`), the noise-model interface and baseline sensor models (`load_noiser`), realism
metrics, and RealD²iff, the clean-to-noisy depth diffusion model (`realdiff train`, the default
noiser of `realdiff noisify`)."""
from realdiff.noise_models import as_noiser, load_noiser

__all__ = ["load_noiser", "as_noiser"]
