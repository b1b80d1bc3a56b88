#!/usr/bin/env bash
# The README's main command: set up, then run the whole pipeline on the offline mnist5k dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGESHIP_SYSTEM_PACKAGES=${EDGESHIP_SYSTEM_PACKAGES:-0} bash scripts/setup.sh

# The report's MCU section needs the Arm compiler (the profile stage). As root with apt, as
# scripts/setup.sh does, install it (a few seconds); elsewhere the profile stage's skip line
# names the one command that enables it.
ARM_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
if ! command -v arm-none-eabi-gcc >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing the Arm compiler for the MCU estimate: ${ARM_PACKAGES[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${ARM_PACKAGES[@]}" >/dev/null) \
      || echo "note: apt-get could not install ${ARM_PACKAGES[*]}; the MCU section is skipped"
  else
    echo "note: not root or no apt-get; the MCU section needs: sudo apt-get install -y ${ARM_PACKAGES[*]}"
  fi
fi
exec .venv/bin/edgeship pipeline --model lenet5 --dataset mnist5k --epochs 5 --qat 1 --out runs/demo "$@"
