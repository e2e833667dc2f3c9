#!/usr/bin/env bash
# Installs the Debian libraries dreamworld needs for headless rendering, if any is missing:
# EGL + Mesa for MuJoCo / dm_control offscreen rendering (MUJOCO_GL=egl), and OSMesa as the
# software fallback (MUJOCO_GL=osmesa), and headless Chromium + its driver for the tests of the
# dream viewer (tests/browser.py). Does nothing when all are present.
set -euo pipefail

packages=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libosmesa6 chromium chromium-driver fonts-liberation)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "warning: cannot install ${missing[*]} (no apt-get); headless MuJoCo rendering may fail" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages for headless rendering: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
