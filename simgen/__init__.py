"""simgen: scripted MuJoCo manipulation tasks rendered to clean depth and demonstrations."""

import os

# Headless rendering by default; a user's own MUJOCO_GL (osmesa, glfw) is respected.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
