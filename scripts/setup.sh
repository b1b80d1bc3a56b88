#!/usr/bin/env bash
# Create .venv with Python 3.11 and install edgeship (editable) with its test extras.
# Installs system packages the tests need (ARM toolchain, QEMU, Chromium) when missing and
# when run as root; without them the tests that need them are skipped, never faked.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

if [ "${EDGESHIP_SYSTEM_PACKAGES:-1}" = "1" ]; then
  missing=()
  command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
  command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v cc >/dev/null || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "installing system packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "note: not root or no apt-get; missing system packages: ${missing[*]} (their tests skip)"
    fi
  fi
fi
