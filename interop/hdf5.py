"""Crash-safe writes into an existing HDF5 file, written once.

HDF5 is not safe against a kill: a process killed while it holds a file open for writing can leave
the whole file unreadable. So nothing here writes into the user's file in place. Long work saves
its results in a `Sidecar` folder beside the file (one .npy per result, each written to a temporary
name and renamed, so a killed run keeps what it finished and resumes), and `atomic_update` then
adds them to a copy of the file that replaces the original by one rename: a kill at any moment
leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np


@contextmanager
def atomic_update(path: str | Path, out: str | Path | None = None) -> Iterator[h5py.File]:
    """An h5py.File open for writing on a copy of `path` (`OUT.partial`); when the block ends
    without an exception the copy is flushed to disk and renamed to `out` (default: over `path`
    itself). On an exception the copy is removed and `path` is untouched."""
    src = Path(path)
    dst = Path(out) if out is not None else src
    tmp = dst.with_name(dst.name + ".partial")
    shutil.copyfile(src, tmp)
    try:
        with h5py.File(tmp, "r+") as f:
            yield f
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Sidecar:
    """A folder of named arrays (`<name>.npy`), each saved atomically: what a long run over a
    dataset file has finished, so a killed run resumes. Names may hold letters, digits, '_', '-',
    '.' and '/' (a '/' becomes '__' on disk)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _file(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", name):
            raise ValueError(f"bad sidecar entry name {name!r}")
        return self.folder / (name.replace("/", "__") + ".npy")

    def has(self, name: str) -> bool:
        return self._file(name).is_file()

    def save(self, name: str, array: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        f = self._file(name)
        tmp = f.with_name(f.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
        os.replace(tmp, f)

    def load(self, name: str) -> np.ndarray:
        return np.load(self._file(name))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
