"""The rules of `handler.compat`: what each kind of worker-vllm variable does, and the accumulator that
collects one environment's effects, refusing where two names disagree."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["same", "setting", "vllm", "env", "noted", "refused"]
TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off"})
UNSET = frozenset({"", "none", "null"})  # worker-vllm passes "None" on, which vLLM reads as unset
GUIDED_BACKENDS = ("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer")  # vLLM 0.32
DEVICES = ("auto", "cuda", "cpu")


@dataclass
class Translation:
    """What a worker-vllm environment asks of this worker."""

    settings: dict[str, str] = field(default_factory=dict)  # Settings field -> value, as the environment gives it
    unset: set[str] = field(default_factory=set)  # Settings fields whose worker-vllm value means "not set"
    vllm_args: list[str] = field(default_factory=list)  # flags for vLLM, before ENGINE_EXTRA_ARGS
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Acc:
    """Collects the effects of one environment, refusing where two names disagree."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.out = Translation()
        self.settings: dict[str, tuple[str, str]] = {}  # field -> (value, from which name)
        self.args: dict[str, tuple[list[str], str]] = {}  # flag -> (tokens, from which name)
        self.parts: dict[str, dict[str, object]] = {"speculative": {}, "guided": {}}

    def refuse(self, name: str, message: str) -> None:
        self.out.refusals.append(f"{name}: {message}")

    def boolean(self, name: str, value: str) -> bool | None:
        word = value.lower()
        if word in TRUE | FALSE:
            return word in TRUE
        self.refuse(name, f"{value!r} is not true or false")
        return None

    def setting(self, name: str, target: str, value: str) -> None:
        own = target.upper()
        given = self.env.get(own, "").strip()
        if own != name and given and given != value:
            self.refuse(name, f"{name}={value} and {own}={given} disagree: keep one")
        elif target in self.settings and self.settings[target][0] != value:
            other, first = self.settings[target][1], self.settings[target][0]
            self.refuse(name, f"{name} and {other} disagree ({value!r}, {first!r}): keep one")
        else:
            self.settings[target] = (value, name)

    def arg(self, name: str, flag: str, tokens: list[str]) -> None:
        if flag in self.args and self.args[flag][0] != tokens:
            self.refuse(name, f"{name} and {self.args[flag][1]} both set vLLM's {flag}, differently: keep one")
        else:
            self.args[flag] = (tokens, name)


Convert = Callable[[_Acc, str, str], None]


def to_setting(target: str, transform: Callable[[str], str] = str) -> Convert:
    return lambda acc, name, value: acc.setting(name, target, transform(value))


def to_flag(flag: str, transform: Callable[[str], str] = str) -> Convert:
    return lambda acc, name, value: acc.arg(name, flag, [flag, transform(value)])


def to_switch(flag: str, *, invert: bool = False) -> Convert:
    def convert(acc: _Acc, name: str, value: str) -> None:
        on = acc.boolean(name, value)
        if on is not None:
            acc.arg(name, flag, [flag if on != invert else "--no-" + flag.removeprefix("--")])

    return convert


def to_set(flag: str) -> Convert:
    def convert(acc: _Acc, name: str, value: str) -> None:
        if acc.boolean(name, value):
            acc.arg(name, flag, [flag])

    return convert


def to_part(group: str, key: str, kind: type = str) -> Convert:
    """One field of a JSON config that worker-vllm assembled from several variables."""

    def convert(acc: _Acc, name: str, value: str) -> None:
        if kind is bool:
            on = acc.boolean(name, value)
            if on is not None:
                acc.parts[group][key] = on
        elif kind is int:
            if value.isdigit():
                acc.parts[group][key] = int(value)
            else:
                acc.refuse(name, f"{value!r} is not a whole number")
        else:
            acc.parts[group][key] = value

    return convert


def enforce_eager(acc: _Acc, name: str, value: str) -> None:
    if acc.boolean(name, value):  # false: not forced, ENGINE_COMPILE's choice (compiled on GPU, as vLLM's)
        acc.setting(name, "engine_compile", "eager")


def device(acc: _Acc, name: str, value: str) -> None:
    if value.lower() in DEVICES:
        acc.setting(name, "engine_device", value.lower())
    else:
        acc.refuse(name, f"{value!r}: this image runs vLLM on NVIDIA GPUs (cuda) or the CPU; set auto, cuda or cpu")


def worker_use_ray(acc: _Acc, name: str, value: str) -> None:
    if acc.boolean(name, value):
        acc.arg(name, "--distributed-executor-backend", ["--distributed-executor-backend", "ray"])


def limit_mm(value: str) -> str:
    """worker-vllm took `image=1,video=0`; vLLM 0.32 reads JSON."""
    if value.startswith("{"):
        return value
    pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
    return json.dumps({key.strip(): int(count) for key, count in pairs})


def vllm_extra_args(acc: _Acc, name: str, value: str) -> None:
    try:
        shlex.split(value)
    except ValueError as exc:
        acc.refuse(name, f"cannot be split as shell words ({exc})")


@dataclass(frozen=True)
class Var:
    """One of worker-vllm's variables and what it does here."""

    name: str
    kind: Kind
    target: str = ""  # same/setting: this worker's variable; vllm: the flag; else ""
    why: str = ""  # what happens here, or why not and what to set instead
    convert: Convert | None = None
    example: str = "1"  # a value that exercises it (tests)
    unset: frozenset[str] = frozenset()  # more values that mean "not set"
    harmless: frozenset[str] = frozenset()  # refused: values that ask only for vLLM's default


def same(name: str, why: str = "", *, example: str = "1", unset: tuple[str, ...] = ()) -> Var:
    return Var(name, "same", name, why, example=example, unset=frozenset(unset))


def mapped(
    name: str, target: str, why: str, convert: Convert, *, example: str = "1", unset: tuple[str, ...] = ()
) -> Var:
    kind: Kind = "setting" if target.isupper() else "vllm"
    return Var(name, kind, target, why, convert, example, frozenset(unset))


def noted(name: str, why: str) -> Var:
    return Var(name, "noted", why=why)


def refused(name: str, why: str, *, harmless: frozenset[str] = frozenset(), example: str = "1") -> Var:
    return Var(name, "refused", why=why, example=example, harmless=harmless)


def env(name: str, why: str) -> Var:
    return Var(name, "env", why=why)


@dataclass(frozen=True)
class LoraModule:
    """One LoRA adapter of LORA_MODULES; a request names it as its `model`."""

    name: str
    path: str
    base_model_name: str = ""

    def to_vllm(self) -> str:
        """One value of vLLM's --lora-modules (its JSON form)."""
        fields = {"name": self.name, "path": self.path, "base_model_name": self.base_model_name}
        return json.dumps({key: value for key, value in fields.items() if value})


def parse_lora_modules(value: str) -> tuple[LoraModule, ...]:
    """LORA_MODULES: a JSON list of {name, path, base_model_name} (worker-vllm's form), one such object, or
    `name=path` words (vLLM's older form). Raises ValueError saying what is wrong."""
    text = value.strip()
    if not text:
        return ()
    if text[0] in "[{":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and i.get("name") and i.get("path") for i in items
        ):
            raise ValueError('expected a list of {"name": ..., "path": ...} objects')
        modules = tuple(LoraModule(str(i["name"]), str(i["path"]), str(i.get("base_model_name") or "")) for i in items)
    else:
        words = text.replace(",", " ").split()
        if not all("=" in word and word.index("=") > 0 for word in words):
            raise ValueError("expected name=path words, or JSON")
        modules = tuple(LoraModule(*word.split("=", 1)) for word in words)
    names = [m.name for m in modules]
    if len(set(names)) != len(names):
        raise ValueError(f"an adapter name is given twice: {names}")
    return modules
