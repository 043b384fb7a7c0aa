"""The noise-model contract: what every depth noise model takes and returns, checked on every call.

A noise model turns clean depth into realistic noisy depth::

    noisy = model.noisify(depth, K, rng)      # or model(depth, K, rng)

- ``depth``: numpy float32 array (B, H, W), z-depth in metres along the optical axis, 0 = no reading;
- ``K``: 3x3 intrinsics, OpenCV convention (fx = K[0,0], fy = K[1,1], cx = K[0,2], cy = K[1,2], pixel
  centres at integer coordinates);
- ``rng``: a ``numpy.random.Generator``; the same seed gives the same output;
- ``noisy``: float32 (B, H, W) metres, 0 = no reading. Pixels that are 0 in ``depth`` stay 0. The input
  is never modified.

Any plain function ``f(depth, K, rng)`` with this contract is a noise model too: ``as_noiser(f)`` wraps
it (with the same input and output checks). Models are saved with ``model.to_json()`` and loaded with
``realdiff.sensors.load_noiser(name_or_path)``; ``Model.fit(clean, real, K)`` estimates a model's
parameters from pairs of clean and real sensor depth.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"  # fitted parameters and committed weights


def validate_depth(depth: Any) -> np.ndarray:
    """Check a depth batch: numpy float32 (B, H, W), finite, >= 0 (0 = no reading). Returns it."""
    if not isinstance(depth, np.ndarray):
        raise ValueError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape (B, H, W), got shape {depth.shape}")
    if 0 in depth.shape:
        raise ValueError(f"depth is empty: shape {depth.shape}")
    if depth.dtype != np.float32:
        raise ValueError(f"depth must be float32 metres, got dtype {depth.dtype}")
    if not np.isfinite(depth).all():
        raise ValueError("depth contains NaN or inf (use 0 for no reading)")
    if (depth < 0).any():
        raise ValueError("depth contains negative values (use 0 for no reading)")
    return depth


def validate_K(K: Any) -> np.ndarray:
    """Check a 3x3 intrinsic matrix (finite, fx, fy > 0). Returns it as a float64 array."""
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("K must be a 3x3 numeric matrix") from None
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got shape {K.shape}")
    if not np.isfinite(K).all():
        raise ValueError("K contains NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must have positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def validate_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )


def check_output(out: Any, depth: np.ndarray, name: str) -> np.ndarray:
    """Raise ValueError naming the model unless out honours the output contract for input depth."""
    problem = None
    if not isinstance(out, np.ndarray):
        problem = f"a {type(out).__name__}, not a numpy array"
    elif out.shape != depth.shape:
        problem = f"shape {out.shape}, expected {depth.shape}"
    elif out.dtype != np.float32:
        problem = f"dtype {out.dtype}, expected float32"
    elif not np.isfinite(out).all():
        problem = "NaN or inf"
    elif (out < 0).any():
        problem = "negative depth"
    elif (out[depth == 0] != 0).any():
        problem = "readings at pixels that had none (0) in the input"
    if problem:
        raise ValueError(f"noise model {name!r} returned {problem}")
    return out


def check_pairs(clean: Any, real: Any, K: Any) -> np.ndarray:
    """Validate fit() inputs; returns K as float64."""
    validate_depth(clean)
    validate_depth(real)
    if clean.shape != real.shape:
        raise ValueError(f"clean and real depth differ in shape: {clean.shape} vs {real.shape}")
    return validate_K(K)


class NoiseModel(ABC):
    """Base of all noise models: validates inputs, calls ``_noisify``, checks its output.

    Subclasses are dataclasses of their parameters and set ``name`` and ``version`` (bump the
    version when the meaning of the parameters changes: saved files of another version are refused).
    """

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        # Store parameters as plain Python numbers, so that params() is JSON-serialisable.
        for f in dataclasses.fields(self):
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            kind = {"float": float, "int": int}.get(type_name)
            if kind is not None:
                value = getattr(self, f.name)
                if kind is int and not float(value).is_integer():
                    raise ValueError(f"{self.name}: {f.name} must be an integer, got {value!r}")
                setattr(self, f.name, kind(value))

    def params(self) -> dict:
        """The model's parameters as a JSON-serialisable dict (the constructor's keyword arguments)."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def fingerprint(self) -> str | None:
        """A digest of what params() does not hold but the output depends on (a weights file), or
        None; noisify records it beside the parameters."""
        return None

    def describe(self) -> dict:
        """What determines the model's output, as JSON: name, version, params and (if any)
        fingerprint. Outputs recorded under one description may be compared or resumed."""
        out = {"noiser": self.name, "version": self.version, "params": self.params()}
        fingerprint = self.fingerprint()  # e.g. RealD²iff's weights: other weights under one name
        if fingerprint:
            out["fingerprint"] = fingerprint
        return out

    def noisify(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clean depth (B, H, W) float32 m -> noisy depth, same shape, float32, 0 = no reading."""
        validate_depth(depth)
        K = validate_K(K)
        validate_rng(rng)
        view = depth.view()
        view.flags.writeable = False  # a model that tried to modify its input would fail loudly
        out = self._noisify(view, K, rng)
        check_output(out, depth, self.name)
        return out.copy() if np.may_share_memory(out, depth) else out

    def __call__(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.noisify(depth, K, rng)

    def noisify_frames(self, depth: np.ndarray, K: np.ndarray, rngs: list) -> np.ndarray:
        """Like noisify, with one generator per frame: a frame's output depends on its own
        generator only, however frames are batched."""
        validate_depth(depth)
        K = validate_K(K)
        if len(rngs) != len(depth):
            raise ValueError(f"{len(rngs)} generators for {len(depth)} frames")
        for rng in rngs:
            validate_rng(rng)
        view = depth.view()
        view.flags.writeable = False
        out = self._noisify_frames(view, K, rngs)
        check_output(out, depth, self.name)
        return out.copy() if np.may_share_memory(out, depth) else out

    def _noisify_frames(self, depth: np.ndarray, K: np.ndarray, rngs: list) -> np.ndarray:
        """Frame by frame; models that batch frames (RealD²iff) override this."""
        return np.concatenate([self._noisify(depth[i : i + 1], K, rng) for i, rng in enumerate(rngs)])

    @abstractmethod
    def _noisify(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The model itself, on validated input (read-only)."""

    @classmethod
    def fit(cls, clean: np.ndarray, real: np.ndarray, K: np.ndarray) -> NoiseModel:
        """Estimate parameters from clean/real depth pairs ((B, H, W) float32 m, 0 = no reading)."""
        raise TypeError(f"{cls.__name__} has no parameters to fit from data")

    def to_json(self) -> str:
        """The model as JSON: {"name", "version", "params"}; ``load_noiser(path)`` reads it back."""
        return json.dumps(
            {"name": type(self).name, "version": self.version, "params": self.params()}, indent=2
        )  # the class's registered name (an instance may carry a label)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class CallableNoiser(NoiseModel):
    """A plain callable f(depth, K, rng) with the noise-model contract, checked on every call."""

    version = "0"

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = f"callable:{getattr(fn, '__qualname__', type(fn).__qualname__)}"

    def params(self) -> dict:
        return {}

    def _noisify(self, depth, K, rng):
        return self.fn(depth, K, rng)

    def to_json(self) -> str:
        raise TypeError(f"{self.name} is a plain callable and cannot be saved")

    def __repr__(self) -> str:
        return f"CallableNoiser({self.fn!r})"


def as_noiser(obj) -> NoiseModel:
    """obj if it is a NoiseModel; a plain callable f(depth, K, rng) wrapped as a CallableNoiser;
    else TypeError."""
    if isinstance(obj, NoiseModel):
        return obj
    if isinstance(obj, type):
        raise TypeError(f"as_noiser needs an instance or a function, got the class {obj.__name__}")
    if callable(obj):
        return CallableNoiser(obj)
    raise TypeError(f"not a noise model or a callable f(depth, K, rng): {type(obj).__name__}")
