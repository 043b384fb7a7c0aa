"""``identity``: the clean depth, unchanged."""

from __future__ import annotations

import dataclasses

from realdiff.sensors.base import NoiseModel, check_pairs


@dataclasses.dataclass(repr=False)
class Identity(NoiseModel):
    """No noise: returns a copy of the clean depth."""

    name = "identity"
    version = "1"

    def _noisify(self, depth, K, rng):
        return depth.copy()

    @classmethod
    def fit(cls, clean, real, K):
        """Nothing to estimate: returns Identity()."""
        check_pairs(clean, real, K)
        return cls()
