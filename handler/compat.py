"""worker-vllm's environment, honoured: never silently ignored.

RunPod's own vLLM worker (runpod-workers/worker-vllm) is configured by environment variables its
users bring along. Each variable it documents (README, docs/configuration.md, .runpod/hub.json and
src/args_builder.py at commit 7a92503, 2026-08-20; and those its src/engine_args.py read until
2026-07-31) is here one of (handler.compat_table):

    same      a setting of this worker under the same name (handler.settings)
    setting   mapped onto a setting of this worker under another name
    vllm      passed to vLLM as a flag (in ENGINE_EXTRA_ARGS, so in the answers' fingerprint);
              so is every flag worker-vllm passes under its own name (handler.compat_flags)
    env       read by vLLM or Hugging Face from the engine's environment, which the worker passes on
    noted     no effect here (streaming batch sizes, settings vLLM dropped), said at start
    refused   the worker stops at start, naming it and what to set instead

`translate(env)` is a pure function of the environment; `load_settings` applies it.
`python -m handler.compat` prints the README's table ("Coming from worker-vllm").
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping

from handler.compat_flags import GENERIC, Form, flag_of
from handler.compat_rules import (
    FALSE,
    GUIDED_BACKENDS,
    UNSET,
    Convert,
    Translation,
    Var,
    _Acc,
    to_flag,
    to_set,
    to_switch,
)
from handler.compat_table import NAMED

BY_NAME: dict[str, Var] = {var.name: var for var in NAMED}
GENERIC_VARS = {name: form for name, form in GENERIC.items() if name not in BY_NAME}
FORMS: dict[Form, Callable[[str], Convert]] = {"value": to_flag, "switch": to_switch, "set": to_set}
SPECULATIVE_METHODS = (("eagle3", "eagle3"), ("eagle", "eagle"), ("medusa", "medusa"))  # by the draft's name


def translate(env: Mapping[str, str]) -> Translation:
    """What a worker-vllm environment asks of this worker: settings, vLLM flags, notes and refusals."""
    acc = _Acc(env)
    for var in NAMED:
        if var.name not in env:
            continue
        value = env[var.name].strip()
        if value.lower() in UNSET | var.unset:
            if var.kind == "same":
                acc.out.unset.add(var.name.lower())
        elif var.kind == "noted":
            acc.out.notes.append(f"{var.name} (worker-vllm) has no effect here: {var.why}")
        elif var.kind == "refused":
            if value.lower() not in var.harmless:
                acc.refuse(var.name, var.why)
        elif var.convert is not None:
            var.convert(acc, var.name, value)
    for name, form in GENERIC_VARS.items():
        value = env.get(name, "").strip()
        if value.lower() not in UNSET:
            FORMS[form](flag_of(name))(acc, name, value)
    _speculative(acc)
    _guided(acc)
    acc.out.settings = {target: value for target, (value, _) in acc.settings.items()}
    acc.out.vllm_args = [token for tokens, _ in acc.args.values() for token in tokens]
    tail = env.get("VLLM_EXTRA_ARGS", "").strip()
    tail = "" if tail.lower() in UNSET else tail
    if acc.out.vllm_args or tail:
        own = env.get("ENGINE_EXTRA_ARGS", "").strip()
        acc.out.settings["engine_extra_args"] = " ".join(p for p in (shlex.join(acc.out.vllm_args), own, tail) if p)
    return acc.out


def _speculative(acc: _Acc) -> None:
    """SPECULATIVE_* into one SPECULATIVE_CONFIG, the method guessed as worker-vllm's engine_args.py did."""
    spec = acc.parts["speculative"]
    if not spec:
        return
    names = ", ".join(
        v.name for v in NAMED if v.kind == "setting" and v.target == "SPECULATIVE_CONFIG" and v.name in acc.env
    )
    model = str(spec.get("model", ""))
    if "method" not in spec:
        if model:
            spec["method"] = next((m for key, m in SPECULATIVE_METHODS if key in model.lower()), "draft_model")
        elif "prompt_lookup_max" in spec:
            spec["method"] = "ngram"
        else:
            acc.out.notes.append(
                f"{names} (worker-vllm) have no effect here without a method, a draft model or "
                "NGRAM_PROMPT_LOOKUP_MAX, as in worker-vllm: no speculative decoding"
            )
            return
    acc.setting(names, "speculative_config", json.dumps(spec, sort_keys=True))


def _guided(acc: _Acc) -> None:
    guided = acc.parts["guided"]
    if not guided:
        return
    if guided.get("backend", "auto") not in GUIDED_BACKENDS:
        acc.refuse("GUIDED_DECODING_BACKEND", f"{guided['backend']!r} is none of {', '.join(GUIDED_BACKENDS)}")
        return
    flag = "--structured-outputs-config"
    names = ", ".join(v.name for v in NAMED if v.name.startswith("GUIDED_DECODING_") and v.name in acc.env)
    acc.arg(names, flag, [flag, json.dumps(guided, sort_keys=True)])


# --- the README's table ---------------------------------------------------------------------------

HERE = {
    "same": "same name",
    "setting": "`{target}`",
    "vllm": "vLLM `{target}`",
    "env": "the engine's environment",
    "noted": "no effect, said at start",
    "refused": "refused at start",
}


def _here(var: Var) -> str:
    text = HERE[var.kind].format(target=var.target)
    if var.kind == "refused" and var.harmless:
        text += " unless " + ("false" if var.harmless == FALSE else " / ".join(f"`{v}`" for v in sorted(var.harmless)))
    return text


def markdown_table() -> str:
    lines = ["| worker-vllm | here | notes |", "|---|---|---|"]
    lines += [f"| `{var.name}` | {_here(var)} | {var.why} |" for var in NAMED]
    generic = ", ".join(f"`{name}`" for name in sorted(GENERIC_VARS))
    return "\n".join(lines) + (
        "\n\nPassed to vLLM as the flag they name (`MAX_LOGPROBS=5` gives `--max-logprobs 5`; a true/false one "
        f"gives `--flag` / `--no-flag`), as worker-vllm does: {generic}."
    )


if __name__ == "__main__":
    print(markdown_table())
