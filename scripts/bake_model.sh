#!/usr/bin/env bash
# Image build step: fetch the model and bake it where the worker reads it.
# Run by the Dockerfile's `model` stage; runnable (and tested) outside Docker too.
#
# Environment (the Dockerfile's build args):
#   MODEL_NAME      fetch source: smollm2 | FOLDER | PATH.gguf | hf:ORG/NAME | s3://bucket/prefix
#   MODEL_REVISION  hub revision (a commit hash pins it); empty: main
#   QUANTIZATION    awq | none. awq: the fetched model must already be an AWQ checkpoint
#                   (quantize on a GPU machine with `python -m builder quantize`, publish it,
#                   and build from that S3 prefix or hub repo): docker build has no GPU.
#   MAX_MODEL_LEN   context length recorded in the manifest; empty: the model's own
#   MODELS_DEST     where the worker reads the model (default /models)
#   BUILDER_PYTHON  python that runs the builder (default python3)
#   WORK_DIR        scratch folder (default /tmp/model-build); removed at the end
# The hub token is never an argument: builder.hub reads the build secret
# /run/secrets/hf_token (RUN --mount=type=secret,id=hf_token) or HF_TOKEN.
set -euo pipefail
model=${MODEL_NAME:?MODEL_NAME is required (e.g. smollm2, hf:ORG/NAME, s3://bucket/prefix)}
revision=${MODEL_REVISION:-}
quantization=${QUANTIZATION:-awq}
dest=${MODELS_DEST:-/models}
py=${BUILDER_PYTHON:-python3}
work=${WORK_DIR:-/tmp/model-build}

case "$quantization" in
  awq|none) ;;
  *) echo "bake_model: QUANTIZATION must be awq or none, got '$quantization'" >&2; exit 2 ;;
esac

fetch_args=("$model" --out "$work/model" --cache-dir "$work/cache")
[ -n "$revision" ] && fetch_args+=(--revision "$revision")
"$py" -m builder fetch "${fetch_args[@]}"

config="$work/model/config.json"
method=$("$py" -c 'import json,sys; c=json.load(open(sys.argv[1])); print((c.get("quantization_config") or {}).get("quant_method", ""))' "$config")
if [ "$quantization" = "awq" ] && [ "$method" != "awq" ]; then
  echo "bake_model: QUANTIZATION=awq but $model is not an AWQ checkpoint (quant_method='$method')." >&2
  echo "  Quantize it on a GPU machine: python -m builder quantize MODEL_DIR --out OUT --device cuda," >&2
  echo "  publish it (python -m builder publish OUT s3://bucket/prefix) and build with MODEL_NAME=s3://bucket/prefix," >&2
  echo "  or build with QUANTIZATION=none." >&2
  exit 3
fi
if [ "$quantization" = "none" ] && [ -n "$method" ]; then
  echo "bake_model: QUANTIZATION=none but $model is quantized ($method)" >&2
  exit 3
fi

bake_args=("$work/model" --dest "$dest" --move)
[ -n "${MAX_MODEL_LEN:-}" ] && bake_args+=(--max-model-len "$MAX_MODEL_LEN")
"$py" -m builder bake "${bake_args[@]}"
rm -rf "$work"
