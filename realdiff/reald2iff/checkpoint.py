"""RealD²iff model files: the networks' weights (float32), their config, the optional stages and
metadata, saved with torch.save and loaded with weights_only=True (no code in a file runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from realdiff.reald2iff.config import ModelConfig
from realdiff.reald2iff.model import RealD2iff
from realdiff.reald2iff.stages import EdgeStage, ReadoutStage, RegistrationStage, TextureStage

MODEL_VERSION = "reald2iff-2"  # bump when the representation or architecture changes


@dataclass
class ModelFile:
    """What a model file holds: the model (eval mode), its optional stages and its metadata."""

    model: RealD2iff
    texture: TextureStage | None = None
    registration: RegistrationStage | None = None
    meta: dict | None = None
    edges: EdgeStage | None = None
    readout: ReadoutStage | None = None


def save_model(
    model: RealD2iff,
    path: str | Path,
    meta: dict | None = None,
    texture: TextureStage | None = None,
    registration: RegistrationStage | None = None,
    edges: EdgeStage | None = None,
    readout: ReadoutStage | None = None,
) -> None:
    """Weights (float32 tensors) with the config, version, stages and any metadata (plain data only).
    A stage is tensors in the state dict ("texture", "shift_bank", "edge_grown" and "edge_shrunk")
    and its sizes and settings in the config (the readout stage: settings only)."""
    config = {
        **model.cfg.to_dict(),
        "texture_tiles": len(texture.bank) if texture else 0,
        "texture_size": texture.size if texture else 64,
        "shifts": len(registration.shifts) if registration else 0,
        "shift_focal": registration.focal if registration else 0.0,
        **(
            {"edge_focal": edges.focal, "edge_length": edges.length, "edge_jump": edges.jump} if edges else {}
        ),
        **(
            {"readout_smooth": r.smooth, "readout_grid": list(r.grid), "readout_focal": r.focal}
            if (r := readout)
            else {}
        ),
    }
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    if texture:
        state["texture"] = texture.bank.float().clone()
    if registration:
        state["shift_bank"] = registration.shifts.float().clone()
    if edges:
        state["edge_grown"], state["edge_shrunk"] = edges.grown.clone(), edges.shrunk.clone()
    torch.save({"version": MODEL_VERSION, "config": config, "meta": meta or {}, "state_dict": state}, path)


def load_model(path: str | Path) -> ModelFile:
    """The ModelFile written by save_model at `path`; ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
        raise ValueError(f"{path}: not a RealD²iff checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or "version" not in ck or "state_dict" not in ck:
        raise ValueError(f"{path}: not a RealD²iff checkpoint")
    if ck["version"] != MODEL_VERSION:
        raise ValueError(f"{path}: a model of version {ck['version']!r}; this code reads {MODEL_VERSION!r}")
    config, state = dict(ck["config"]), dict(ck["state_dict"])
    tiles, size = config.pop("texture_tiles", 0), config.pop("texture_size", 64)
    shifts, focal = config.pop("shifts", 0), config.pop("shift_focal", 0.0)
    bank, shift_bank = state.pop("texture", None), state.pop("shift_bank", None)
    edge_cfg = {k: config.pop(f"edge_{k}") for k in ("focal", "length", "jump") if f"edge_{k}" in config}
    grown, shrunk = state.pop("edge_grown", None), state.pop("edge_shrunk", None)
    readout_cfg = {
        k: config.pop(f"readout_{k}") for k in ("smooth", "grid", "focal") if f"readout_{k}" in config
    }
    try:
        model = RealD2iff(ModelConfig(**config))
        model.load_state_dict(state)
        if (bank is None) != (tiles == 0) or (bank is not None and tuple(bank.shape) != (tiles, size, size)):
            raise RuntimeError(
                f"a texture bank of shape {None if bank is None else tuple(bank.shape)} "
                f"for {tiles} tiles of {size} px"
            )
        if (shift_bank is None) != (shifts == 0) or (shift_bank is not None and len(shift_bank) != shifts):
            raise RuntimeError(f"{0 if shift_bank is None else len(shift_bank)} shifts for {shifts}")
        edges = EdgeStage(grown, shrunk, **edge_cfg) if grown is not None or edge_cfg else None
        readout = ReadoutStage(**readout_cfg) if readout_cfg else None
    except (TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: checkpoint does not match its config: {str(e).splitlines()[0]}") from None
    return ModelFile(
        model.eval(),
        TextureStage(bank) if bank is not None else None,
        RegistrationStage(shift_bank, focal) if shift_bank is not None else None,
        ck.get("meta", {}),
        edges,
        readout,
    )
