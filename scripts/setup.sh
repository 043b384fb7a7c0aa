#!/usr/bin/env bash
# Installs everything simgen needs on a fresh Debian machine (run as root for the apt step):
# headless GL libraries, a virtual environment in .venv, torch 2.13.0 (CPU) first, then the
# project with its pins. Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${1:-}

# EGL/OSMesa for headless MuJoCo rendering; gcc/python headers to build robosuite's evdev.
APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6 libgl1 libglib2.0-0 gcc python3-dev python3-venv"
missing=$(for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | tr "\n" " ")
if [ -n "${missing// /}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: $missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: missing system packages ($missing); install them as root with apt-get" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip 2>/dev/null || true
  # torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
  "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q -e ".${EXTRAS:+[$EXTRAS]}"
  # The tests read the robomimic export with robomimic's own loader; its declared dependencies
  # (egl_probe, tensorboard, torchvision unpinned) are not used by its dataset code.
  case ",$EXTRAS," in
    *,test,*) "$VENV/bin/pip" install -q --no-deps robomimic==0.3.0 ;;
  esac
  touch "$stamp"
fi
