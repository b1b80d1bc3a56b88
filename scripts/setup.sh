#!/usr/bin/env bash
# Create .venv with Python 3.11 and install edgeship (editable) with its test extras.
# Installs system packages the tests need (ARM toolchain, QEMU system and user mode, Chromium,
# Debian's full Fashion-MNIST)
# when missing and when run as root; without them the tests that need them are skipped, never faked.
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
  command -v qemu-x86_64 >/dev/null || missing+=(qemu-user)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v cc >/dev/null || missing+=(gcc)
  # a PostgreSQL server for the test of `edgeship tune` workers sharing one study
  command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  # the full Fashion-MNIST, read by `--dataset fashion_mnist` when the Keras cache lacks it
  [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || missing+=(dataset-fashion-mnist)
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

# The phone demo's npm packages (@litertjs/core, onnxruntime-web, playwright-core), pinned by its
# package-lock.json and reinstalled only when that file changes. Without node and npm the
# browser tests skip with the reason; `edgeship serve-demo` then says to run npm ci.
PHONE_WEB=firmware_examples/phone_web
if command -v node >/dev/null && command -v npm >/dev/null; then
  if ! cmp -s "$PHONE_WEB/package-lock.json" "$PHONE_WEB/node_modules/.edgeship-package-lock.json"; then
    echo "installing the phone demo's npm packages (npm ci in $PHONE_WEB)"
    if (cd "$PHONE_WEB" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
      cp "$PHONE_WEB/package-lock.json" "$PHONE_WEB/node_modules/.edgeship-package-lock.json"
    else
      echo "note: npm ci failed in $PHONE_WEB; the phone demo's tests skip"
    fi
  fi
else
  echo "note: node/npm not found; the phone demo's browser tests skip (needs Node.js 20+)"
fi
