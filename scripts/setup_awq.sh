#!/usr/bin/env bash
# Create or update the AWQ quantization venv (AutoAWQ 0.2.9 + transformers 4.51.3).
# Usage: scripts/setup_awq.sh VENV_DIR REQUIREMENTS_FILE
# Idempotent: a second run finds everything installed and changes nothing.
# AWQ_TORCH=cpu (default) installs torch's CPU build; AWQ_TORCH=cuda takes the
# default (CUDA) torch wheel from PyPI, for a GPU build machine.
set -euo pipefail
venv=${1:-.venv-awq}
req=${2:-requirements-awq.txt}
torch_variant=${AWQ_TORCH:-cpu}
torch_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -f "$req" ] || { echo "setup_awq: requirements file $req not found" >&2; exit 2; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip setuptools wheel

torch_pin=$(grep -E '^torch==' "$req" | head -n1)
awq_pin=$(grep -E '^autoawq==' "$req" | head -n1)
[ -n "$torch_pin" ] || { echo "setup_awq: $req pins no torch==" >&2; exit 2; }
[ -n "$awq_pin" ] || { echo "setup_awq: $req pins no autoawq==" >&2; exit 2; }

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if [ "$torch_variant" = "cuda" ]; then
    "${pip[@]}" install -q "$torch_pin"
  elif ! "${pip[@]}" install -q --no-deps --only-binary=:all: "${torch_pin}+cpu" 2>/dev/null; then
    # Only now ask PyTorch's index, so pip does not query it for every package.
    echo "setup_awq: no local ${torch_pin}+cpu wheel; using $torch_index" >&2
    "${pip[@]}" install -q --no-deps --index-url "$torch_index" "${torch_pin}+cpu"
  fi
fi

# Everything but torch (installed above; a plain pin would not match +cpu) and
# autoawq (below, without its dependency list).
rest=$(mktemp)
trap 'rm -f "$rest"' EXIT
grep -vE '^(autoawq|torch)==' "$req" >"$rest"
"${pip[@]}" install -q -r "$rest"
"${pip[@]}" install -q --no-deps --no-build-isolation "$awq_pin"
# Same reason as the engine venv: PyPI's torchvision/torchaudio break transformers
# beside a +cpu torch; AWQ does not use them.
"${pip[@]}" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -c "import awq, torch, transformers; assert transformers.__version__ == '4.51.3', transformers.__version__"
