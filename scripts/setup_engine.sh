#!/usr/bin/env bash
# Create or update the engine virtual environment (vLLM CPU build + torch CPU).
# Usage: scripts/setup_engine.sh VENV_DIR REQUIREMENTS_FILE
set -euo pipefail
venv=${1:-.venv-engine}
req=${2:-requirements-engine.txt}
torch_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip

# torch's CPU build: use the wheel pip already finds (a local wheel folder on
# these machines); only when there is none, add PyTorch's CPU index, so pip
# does not ask an extra index for every other package.
torch_pin=$(grep -E '^torch==' "$req" | head -n1)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if ! "$venv/bin/python" -m pip install -q --no-deps --only-binary=:all: "${torch_pin}+cpu" 2>/dev/null; then
    echo "setup_engine: no local ${torch_pin}+cpu wheel; using $torch_index" >&2
    "$venv/bin/python" -m pip install -q --no-deps --index-url "$torch_index" "${torch_pin}+cpu"
  fi
fi
"$venv/bin/python" -m pip install -q -r "$req"
"$venv/bin/python" -c "import vllm, torch" >/dev/null
# PyPI's torchvision/torchaudio/torchcodec do not import beside torch+cpu and
# break transformers' imports; vLLM's text path does not need them.
"$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
