"""One quantize job inside the AWQ venv: calibrate, quantize, save, then measure quality.

Input: a spec dict (written by builder.quantize). Output: a report dict (JSON-serializable).
Raises RuntimeJobError with a message for the person running the command.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from builder.awq_runtime.evaluate import perplexity
from builder.awq_runtime.weights import (
    decoder_linear_names,
    dequantize_gemm,
    relative_error,
    round_to_nearest,
    undo_awq_scales,
)
from builder.model_files import add_compat_config

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
NOT_COPIED = {"config.json", "manifest.json", "model.safetensors.index.json", "quality_report.json"}
EVAL_WINDOW = 1024


class RuntimeJobError(Exception):
    """A quantize job cannot run or its input is unusable; the message says why."""


def read_texts(path: Path) -> list[str]:
    """Paragraphs of a text file (separated by blank lines), stripped, empty ones dropped."""
    text = path.read_text(encoding="utf-8")
    return [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def prepare_calibration(texts: list[str], tokenizer, max_seq_len: int) -> tuple[list[str], dict]:
    """Keep the texts AutoAWQ will use (it silently drops those over max_seq_len) and pick the block length.

    AutoAWQ concatenates the kept samples and cuts them into blocks of max_calib_seq_len
    tokens; with fewer tokens than one block it would fail inside torch.cat/empty lists.
    """
    lengths = [len(tokenizer.encode(t)) for t in texts]
    kept = [t for t, n in zip(texts, lengths, strict=True) if 0 < n <= max_seq_len]
    if not kept:
        longest = max(lengths, default=0)
        raise RuntimeJobError(
            f"no calibration text fits max_calib_seq_len={max_seq_len} tokens: all {len(texts)} texts are longer "
            f"(longest {longest} tokens) or empty; split them into shorter paragraphs (blank-line separated)"
        )
    tokens = sum(n for n in lengths if 0 < n <= max_seq_len)
    seq_len = min(max_seq_len, tokens)
    stats = {
        "calib_texts": len(texts),
        "calib_texts_used": len(kept),
        "calib_texts_dropped": len(texts) - len(kept),
        "calib_tokens": tokens,
        "calib_seq_len": seq_len,
        "calib_blocks": tokens // seq_len,
    }
    return kept, stats


def _stage_model(model_dir: Path, stage: Path) -> None:
    """A view of model_dir with a config transformers 4.51 reads right (rope_theta, tokenizer class)."""
    for item in model_dir.iterdir():
        if item.name != "config.json":
            (stage / item.name).symlink_to(item.resolve())
    shutil.copyfile(model_dir / "config.json", stage / "config.json")
    add_compat_config(stage)


def _load_tokenizer(model_dir: Path):
    from transformers import PreTrainedTokenizerFast

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise RuntimeJobError(f"{model_dir} has no tokenizer.json (needed for calibration and perplexity)")
    # A tokenizer saved by transformers 5 does not load through AutoTokenizer in 4.51.
    return PreTrainedTokenizerFast(tokenizer_file=str(path))


def _pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeJobError("--device cuda: torch in the AWQ venv sees no CUDA device (CPU build or no GPU)")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _write_output_config(model_dir: Path, out: Path) -> dict:
    """The original config (as transformers 5 / vLLM read it) plus AutoAWQ's quantization_config."""
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["quantization_config"] = written["quantization_config"]
    config["torch_dtype"] = "float16"
    if "dtype" in config:
        config["dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def _copy_side_files(model_dir: Path, out: Path) -> None:
    """Tokenizer, chat template, generation config: copied as they are (not re-saved by 4.51)."""
    for item in model_dir.iterdir():
        if item.is_file() and item.name not in NOT_COPIED and not item.name.endswith(WEIGHT_SUFFIXES):
            shutil.copyfile(item, out / item.name)


def _load_checkpoint(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


def _awq_plain_state(original_sd: dict, checkpoint: dict, linears: list[str], tied: bool) -> tuple[dict, dict]:
    """State dict for a plain model from the AWQ checkpoint (quantized linears dequantized)."""
    state, dequantized = {}, {}
    for key, value in original_sd.items():
        base = key[: -len(".weight")] if key.endswith(".weight") else None
        if base in linears:
            try:
                w = dequantize_gemm(
                    checkpoint[f"{base}.qweight"], checkpoint[f"{base}.qzeros"], checkpoint[f"{base}.scales"]
                )
            except KeyError as exc:
                raise RuntimeJobError(f"AWQ checkpoint lacks {exc.args[0]}") from exc
            dequantized[base] = w
            state[key] = w.to(value.dtype)
        elif key in checkpoint:
            state[key] = checkpoint[key].to(value.dtype)
        elif key == "lm_head.weight" and tied:
            continue
        else:
            raise RuntimeJobError(f"AWQ checkpoint lacks tensor {key}")
    return state, dequantized


def run(spec: dict) -> dict:
    from awq import AutoAWQForCausalLM
    from transformers import AutoModelForCausalLM

    from builder.awq_runtime.fixed_quantizer import FixedAwqQuantizer, RecordingAwqQuantizer

    model_dir, out = Path(spec["model_dir"]), Path(spec["out_dir"])
    bits, group = int(spec["bits"]), int(spec["group_size"])
    device = _pick_device(spec["device"])
    torch.manual_seed(int(spec.get("seed", 0)))
    tokenizer = _load_tokenizer(model_dir)
    texts, calib = prepare_calibration(read_texts(Path(spec["calib_file"])), tokenizer, int(spec["max_calib_seq_len"]))
    heldout_ids = tokenizer.encode("\n\n".join(read_texts(Path(spec["heldout_file"]))))
    report: dict = {"device": device, "bits": bits, "group_size": group, "version": spec["version"], **calib}
    report["heldout_tokens"] = len(heldout_ids)
    load_dtype = torch.float16 if device == "cuda" else torch.float32

    with tempfile.TemporaryDirectory(prefix="awq-stage-") as tmp:
        stage = Path(tmp)
        _stage_model(model_dir, stage)
        started = time.monotonic()
        awq_model = AutoAWQForCausalLM.from_pretrained(str(stage), torch_dtype=load_dtype, use_cache=False)
        quant_config = {"zero_point": True, "q_group_size": group, "w_bit": bits, "version": spec["version"].upper()}
        awq_model.quantize(
            tokenizer,
            quant_config=quant_config,
            calib_data=texts,
            max_calib_samples=len(texts),
            max_calib_seq_len=calib["calib_seq_len"],
            quantizer_cls=RecordingAwqQuantizer if spec.get("upstream_quantizer") else FixedAwqQuantizer,
        )
        report["quantize_seconds"] = round(time.monotonic() - started, 1)
        quantizer = awq_model.quantizer
        column_scales = getattr(quantizer, "column_scales", {})
        row_scales = getattr(quantizer, "row_scales", {})
        awq_model.model.half()  # non-quantized tensors in fp16 too: the dtype vLLM serves AWQ in
        awq_model.save_quantized(str(out))
        del awq_model, quantizer
        config = _write_output_config(model_dir, out)
        _copy_side_files(model_dir, out)

        started = time.monotonic()
        eval_device = device
        eval_dtype = torch.float16 if device == "cuda" else torch.float32
        original = AutoModelForCausalLM.from_pretrained(str(stage), torch_dtype=eval_dtype).to(eval_device).eval()
    window = min(EVAL_WINDOW, int(config.get("max_position_embeddings") or EVAL_WINDOW))
    report.update(_measure(original, heldout_ids, window, out, config, column_scales, row_scales, bits, group))
    report["eval_seconds"] = round(time.monotonic() - started, 1)
    return report


def _measure(original, heldout_ids, window, out, config, column_scales, row_scales, bits, group) -> dict:  # noqa: PLR0917
    """Perplexities (original, RTN, AWQ checkpoint dequantized) and per-layer reconstruction errors."""
    report: dict = {"ppl_original": perplexity(original, heldout_ids, window, "original")}
    original_sd = {k: v.detach().clone() for k, v in original.state_dict().items()}
    linears = decoder_linear_names(list(original_sd))
    tied = bool(config.get("tie_word_embeddings", False))
    state, dequantized = _awq_plain_state(original_sd, _load_checkpoint(out), linears, tied)

    awq_errors, rtn_errors, rtn_state = {}, {}, {}
    for name in tqdm(linears, desc="reconstruction", leave=False):
        w = original_sd[f"{name}.weight"]
        restored = undo_awq_scales(dequantized[name], column_scales.get(name), row_scales.get(name))
        awq_errors[name] = relative_error(restored, w)
        rtn = round_to_nearest(w, bits, group)
        rtn_errors[name] = relative_error(rtn, w)
        rtn_state[f"{name}.weight"] = rtn.to(w.dtype)
    worst = max(awq_errors, key=awq_errors.__getitem__)
    report.update(
        weight_error_max=awq_errors[worst],
        weight_error_layer=worst,
        weight_error_mean=sum(awq_errors.values()) / len(awq_errors),
        rtn_weight_error_max=max(rtn_errors.values()),
        rtn_weight_error_mean=sum(rtn_errors.values()) / len(rtn_errors),
        quantized_layers=len(linears),
        scaled_layers=len(column_scales),
    )

    model = copy.deepcopy(original)
    model.load_state_dict(rtn_state, strict=False)
    report["ppl_rtn"] = perplexity(model, heldout_ids, window, "RTN")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not (tied and k == "lm_head.weight")]:
        raise RuntimeJobError(f"AWQ checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    report["ppl_awq"] = perplexity(model, heldout_ids, window, "AWQ")
    return report
