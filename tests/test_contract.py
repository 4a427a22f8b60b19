"""The job contract, without an engine."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from core.contract import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    TEMPLATE_TOKENS_PER_MESSAGE,
    TEMPLATE_TOKENS_PER_REQUEST,
    EngineRequest,
    JobLimits,
    parse_job,
    parse_single,
)
from core.errors import InputError
from handler.settings import load_settings
from tests.prerequisites import ENGINE_PY, REPO, strict

SETTINGS = load_settings({"DEFAULT_MAX_TOKENS": "100", "MAX_TOKENS_LIMIT": "500", "MAX_BATCH_SIZE": "3",
                          "MAX_PROMPT_CHARS": "50"})  # fmt: skip


def single(data: dict[str, Any]) -> EngineRequest:
    return parse_single(data, SETTINGS.limits)


def test_prompt_job_fills_every_sampling_default() -> None:
    req = single({"prompt": "hi"})
    assert req.route == COMPLETIONS_ROUTE
    assert req.body["max_tokens"] == 100
    assert req.body["temperature"] == 1.0
    assert {"top_p", "top_k", "min_p", "seed", "stop", "repetition_penalty", "n"} <= set(req.body)


def test_omitted_and_explicit_defaults_give_the_same_body() -> None:
    explicit = single({"prompt": "hi", "sampling_params": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 100}})
    assert explicit.body == single({"prompt": "hi"}).body


def test_stop_string_becomes_a_list() -> None:
    assert single({"prompt": "hi", "sampling_params": {"stop": "\n"}}).body["stop"] == ["\n"]


def test_chat_job_keeps_messages() -> None:
    req = single({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert req.route == CHAT_ROUTE and req.stream
    assert req.body["messages"] == [{"role": "user", "content": "hi"}]


def test_openai_input_is_passed_through_with_defaults_and_without_model() -> None:
    openai_input = {
        "model": "x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 7,
        "stream": True,
        "response_format": {"type": "text"},
    }
    req = single({"openai_route": "/v1/chat/completions", "openai_input": openai_input})
    assert req.openai and req.stream
    assert "model" not in req.body and "stream" not in req.body
    assert req.body["max_tokens"] == 7
    assert req.body["response_format"] == {"type": "text"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "extra": 1}, "extra"),
        ({"prompt": "x", "messages": []}, "input"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
        ({"prompt": "x", "sampling_params": {"temperature": -1}}, "sampling_params.temperature"),
        ({"prompt": "x", "sampling_params": {"max_tokens": 501}}, "sampling_params.max_tokens"),
        ({"prompt": "x" * 51}, "prompt"),
        ({"prompt": "x", "cache": {"ttl": 0}}, "cache.ttl"),
        ({"openai_route": "/v1/completions", "openai_input": {}}, "openai_input.prompt"),
        (
            {"openai_route": "/v1/completions", "openai_input": {"prompt": "x", "max_tokens": 900}},
            "openai_input.max_tokens",
        ),
        ("text", "input"),
    ],
)
def test_bad_input_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_job(data, SETTINGS.limits)
    assert info.value.field == field
    assert field in info.value.message


def test_batch_keeps_bad_items_in_place() -> None:
    job = parse_job({"requests": [{"prompt": "a"}, {"prompt": ""}, {"prompt": "c", "stream": True}]}, SETTINGS.limits)
    assert job.batch
    assert isinstance(job.items[0], EngineRequest)
    assert isinstance(job.items[1], InputError) and job.items[1].field == "requests.1.prompt"
    assert isinstance(job.items[2], InputError) and job.items[2].field == "requests.2.stream"


@pytest.mark.parametrize(
    ("data", "field"),
    [({"requests": []}, "requests"), ({"requests": [{"prompt": "a"}] * 4}, "requests"),
     ({"requests": [{"prompt": "a"}], "stream": True}, "stream")],
)  # fmt: skip
def test_bad_batches_fail_as_a_whole(data: Any, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_job(data, SETTINGS.limits)
    assert info.value.field == field


def test_max_completion_tokens_is_the_cap_and_is_limited() -> None:
    chat = {"openai_route": "/v1/chat/completions", "openai_input": {"messages": [{"role": "user", "content": "hi"}]}}
    req = single({**chat, "openai_input": {**chat["openai_input"], "max_tokens": 10, "max_completion_tokens": 20}})
    assert req.body["max_tokens"] == 20 and "max_completion_tokens" not in req.body  # vLLM would prefer it
    with pytest.raises(InputError) as over:
        single({**chat, "openai_input": {**chat["openai_input"], "max_completion_tokens": 501}})
    assert over.value.field == "openai_input.max_completion_tokens" and "over the limit of 500" in over.value.message
    with pytest.raises(InputError, match="whole number"):
        single({**chat, "openai_input": {**chat["openai_input"], "max_completion_tokens": "lots"}})
    completions = {"openai_route": "/v1/completions", "openai_input": {"prompt": "hi", "max_completion_tokens": 7}}
    assert single(completions).body["max_tokens"] == 7


def test_openai_content_parts_count_toward_the_prompt_limit() -> None:
    parts = [{"type": "text", "text": "x" * 30}, {"type": "text", "text": "y" * 30}]
    data = {"openai_route": "/v1/chat/completions", "openai_input": {"messages": [{"role": "user", "content": parts}]}}
    with pytest.raises(InputError) as refused:
        single(data)
    assert refused.value.field == "openai_input.messages" and "60 characters" in refused.value.message


def test_max_cost_usd_is_carried_and_validated() -> None:
    assert single({"prompt": "hi", "max_cost_usd": 0.01}).max_cost_usd == 0.01
    assert single({"prompt": "hi"}).max_cost_usd is None
    capped = parse_single({"prompt": "hi"}, load_settings({"MAX_COST_USD_PER_JOB": "0.5"}).limits)
    assert capped.max_cost_usd == 0.5
    with pytest.raises(InputError) as bad:
        single({"prompt": "hi", "max_cost_usd": -1})
    assert bad.value.field == "max_cost_usd"


@pytest.mark.parametrize(
    ("openai_input", "field", "problem"),
    [
        ({"prompt": "hi", "best_of": 99}, "openai_input.best_of", "from 1 to 16"),
        ({"prompt": "hi", "n": 3, "best_of": 2}, "openai_input.best_of", "at least n"),
        ({"prompt": "hi", "logprobs": 50}, "openai_input.logprobs", "from 0 to 20"),
        ({"prompt": "hi", "stop": ["x"] * 17}, "openai_input.stop", "at most 16"),
        ({"prompt": "hi", "stop": ["x" * 300]}, "openai_input.stop.0", "at most 256"),
        ({"prompt": "hi", "tools": [{"type": "function", "function": {"name": "f", "description": "d" * 60}}]},
         "openai_input.tools", "over the limit of 50"),
    ],
)  # fmt: skip
def test_every_limit_applies_to_openai_inputs(openai_input: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(InputError) as refused:
        single({"openai_route": "/v1/completions", "openai_input": openai_input})
    assert refused.value.field == field and problem in refused.value.message, refused.value.message


def test_the_same_stop_limits_apply_to_plain_shapes() -> None:
    with pytest.raises(InputError) as refused:
        single({"prompt": "hi", "sampling_params": {"stop": ["x"] * 17}})
    assert refused.value.field == "sampling_params.stop"
    chat_logprobs = {"openai_route": "/v1/chat/completions",
                     "openai_input": {"messages": [{"role": "user", "content": "hi"}], "logprobs": True,
                                      "top_logprobs": 5}}  # fmt: skip
    assert single(chat_logprobs).body["top_logprobs"] == 5


# --- bounds of the work (issue 21: reservations are upper bounds) ------------------------------
WIDE = JobLimits(default_max_tokens=100, max_tokens_limit=500, max_prompt_chars=10**6, max_batch_size=1000,
                 max_cost_usd_per_job=0.0)  # fmt: skip
# prompt tokens measured with models/smollm2's tokenizer (byte-level BPE): alone, and as one user message
# through its chat template (which adds a default system prompt); a character is not a token's bound
MEASURED = [
    ("你好世界，今天天气很好。我们去公园散步吧！", 21, 63, 42, 72),  # text, characters, UTF-8 bytes, tokens, chat
    ("😀😃😄😁😆😅🤣😂🙂🙃", 10, 40, 29, 59),
    ("👨‍👩‍👧‍👦" * 5, 35, 125, 90, 120),  # a family: four emoji joined by three ZWJ, five times
]


@pytest.mark.parametrize(("text", "chars", "utf8", "tokens", "chat_tokens"), MEASURED)
def test_the_prompt_bound_counts_bytes_not_characters(
    text: str, chars: int, utf8: int, tokens: int, chat_tokens: int
) -> None:
    prompt = single({"prompt": text})
    assert prompt.prompt_chars == chars < tokens  # the old bound: a token per character at most
    assert prompt.prompt_tokens_max == utf8 + TEMPLATE_TOKENS_PER_REQUEST >= tokens
    chat = single({"messages": [{"role": "user", "content": text}]})
    assert chat.prompt_tokens_max == utf8 + TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST >= chat_tokens
    assert chat.prompts == 1 and chat.completions == 1


def completions(prompt: Any, limits: JobLimits = WIDE, **extra: Any) -> EngineRequest:
    return parse_single({"openai_route": COMPLETIONS_ROUTE, "openai_input": {"prompt": prompt, **extra}}, limits)


def test_a_list_of_prompts_counts_every_prompt() -> None:
    many = completions(["a"] * 1000, n=2, best_of=3)
    assert many.prompts == 1000 and many.completions == 3000  # best_of sequences for each prompt
    assert completions(["a"] * 1000, n=2).completions == 2000
    assert many.prompt_chars == 1000
    assert many.prompt_tokens_max == 1000 + 1000 * TEMPLATE_TOKENS_PER_REQUEST
    chinese = completions(["你好"] * 10)  # 6 bytes each
    assert chinese.prompt_tokens_max == 10 * (6 + TEMPLATE_TOKENS_PER_REQUEST) and chinese.prompt_chars == 20
    ids = completions([[1, 2, 3]] * 5)  # token-id lists: a token per id
    assert ids.prompts == 5 and ids.prompt_tokens_max == 15 + 5 * TEMPLATE_TOKENS_PER_REQUEST
    one = completions([1, 2, 3])  # one token-id list is one prompt
    assert one.prompts == 1 and one.completions == 1 and one.prompt_tokens_max == 3 + TEMPLATE_TOKENS_PER_REQUEST
    suffixed = completions(["ab", "cd"], suffix="xyz")  # request-level text reaches every prompt
    assert suffixed.prompt_tokens_max == 4 + 2 * (3 + TEMPLATE_TOKENS_PER_REQUEST)


def test_prompt_lists_are_limited_in_number_and_size_together() -> None:
    with pytest.raises(InputError) as many:
        completions(["a"] * 4, SETTINGS.limits)
    assert many.value.field == "openai_input.prompt"
    assert many.value.message == "openai_input.prompt: 4 prompts is over the limit of 3"
    with pytest.raises(InputError) as large:
        completions(["x" * 20] * 3, SETTINGS.limits)  # 20 characters each, 60 together
    assert large.value.field == "openai_input.prompt" and "60 characters" in large.value.message
    assert "over the limit of 50" in large.value.message
    assert completions(["x" * 16] * 3, SETTINGS.limits).prompt_chars == 48


@pytest.mark.parametrize(
    "prompt", [[1, "a"], [["a"]], [[1], "b"], [[]], 3, {"text": "a"}, [True, False], [None]]
)  # fmt: skip
def test_a_prompt_must_have_a_shape_vllm_takes(prompt: Any) -> None:
    with pytest.raises(InputError) as refused:
        completions(prompt)
    assert refused.value.field == "openai_input.prompt" and "list of token-id lists" in refused.value.message


def chat(messages: list[dict[str, Any]], limits: JobLimits = WIDE, **extra: Any) -> EngineRequest:
    return parse_single({"openai_route": CHAT_ROUTE, "openai_input": {"messages": messages, **extra}}, limits)


TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "猫"}'}}


def test_every_text_a_message_brings_is_counted() -> None:
    plain = chat([{"role": "assistant", "content": "ok"}])
    base = plain.prompt_tokens_max
    assert base == 2 + TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST
    named = chat([{"role": "assistant", "content": "ok", "name": "bob"}])
    assert named.prompt_tokens_max == base + 3 and named.prompt_chars == 5
    called = chat([{"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}])
    compact = json.dumps([TOOL_CALL], ensure_ascii=False, separators=(",", ":"))
    assert called.prompt_chars == len(compact)
    assert called.prompt_tokens_max - TEMPLATE_TOKENS_PER_MESSAGE - TEMPLATE_TOKENS_PER_REQUEST > len(compact.encode())
    answered = chat([{"role": "tool", "content": "猫", "tool_call_id": "call_1"}])
    assert answered.prompt_tokens_max == 3 + 6 + TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST
    strange = chat([{"role": "narrator" * 10, "content": "x"}])  # a role vLLM passes on to the template
    assert strange.prompt_chars == 81
    parts = chat([{"role": "user", "content": [{"type": "text", "text": "ab"}, {"type": "text", "text": "cd"}]}])
    assert parts.prompt_chars == 4 and parts.prompt_tokens_max == base - 2 + 4 + 1  # a newline between parts


def test_request_fields_that_reach_the_prompt_are_counted_once_per_prompt() -> None:
    documents = [{"title": "t", "text": "文" * 10}]
    with_documents = chat([{"role": "user", "content": "hi"}], documents=documents)
    assert with_documents.prompt_chars == 2 + len(json.dumps(documents, ensure_ascii=False, separators=(",", ":")))
    wide = json.dumps(documents, ensure_ascii=False, indent=4).encode()  # as a template may write it
    assert with_documents.prompt_tokens_max == 2 + len(wide) + TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST
    kwargs = chat([{"role": "user", "content": "hi"}], chat_template_kwargs={"persona": "ünïcode"})
    assert kwargs.prompt_tokens_max > with_documents.prompt_tokens_max - len(wide) + len("ünïcode".encode())


@pytest.mark.parametrize(
    ("message", "extra", "field"),
    [
        ({"role": "assistant", "content": None,
          "tool_calls": [{**TOOL_CALL, "function": {"name": "f", "arguments": '{"q": "' + "x" * 60 + '"}'}}]},
         {}, "openai_input.messages"),
        ({"role": "assistant", "content": "hi", "name": "n" * 60}, {}, "openai_input.messages"),
        ({"role": "tool", "content": "hi", "tool_call_id": "c" * 60}, {}, "openai_input.messages"),
        ({"role": "user", "content": "hi"}, {"documents": [{"text": "d" * 60}]}, "openai_input.documents"),
        ({"role": "user", "content": "hi"}, {"chat_template_kwargs": {"persona": "p" * 60}},
         "openai_input.chat_template_kwargs"),
        ({"role": "user", "content": "h" * 30}, {"documents": [{"text": "d" * 15}]}, "openai_input.messages"),
    ],
)  # fmt: skip
def test_all_text_that_reaches_the_prompt_is_limited(
    message: dict[str, Any], extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputError) as refused:
        chat([message], SETTINGS.limits, **extra)
    assert refused.value.field == field and "over the limit of 50" in refused.value.message, refused.value.message


def test_the_limit_message_gives_every_figure() -> None:
    with pytest.raises(InputError) as refused:
        chat([{"role": "user", "content": "h" * 30}], SETTINGS.limits, documents=[{"text": "d" * 15}])
    assert refused.value.message == (  # the field with the most text is named; documents as JSON: [{"text":"d..."}]
        "openai_input.messages: the text that reaches the prompt is 58 characters (messages 30, documents 28), "
        "over the limit of 50"
    )


def test_a_chat_is_measured_by_its_messages_whatever_else_it_carries() -> None:
    with pytest.raises(InputError) as refused:  # a stray `prompt` (ignored by vLLM) does not hide the messages
        chat([{"role": "user", "content": "x" * 60}], SETTINGS.limits, prompt="hi")
    assert refused.value.field == "openai_input.messages"


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"chat_template": "{{ 'x' * 10**9 }}"}, "openai_input.chat_template"),
     ({"chat_template_kwargs": {"chat_template": "{{ 'x' }}"}}, "openai_input.chat_template_kwargs.chat_template"),
     ({"prompt_embeds": "AAAA"}, "openai_input.prompt_embeds")],
)  # fmt: skip
def test_what_would_unbound_the_prompt_is_refused(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as refused:
        chat([{"role": "user", "content": "hi"}], **extra)
    assert refused.value.field == field


def test_messages_must_be_objects() -> None:
    with pytest.raises(InputError) as refused:
        chat(["hi"])  # type: ignore[list-item]
    assert refused.value.field == "openai_input.messages" and "message objects" in refused.value.message


# The real tokenizer, through the engine venv (transformers): vLLM's own steps, by hand. SmolLM2's template
# writes only roles and contents; the Llama-3.1-like one writes tools, tool calls and documents as indented
# JSON, the widest a template writes them.
SMOLLM2 = REPO / "models" / "smollm2"
WIDE_TEMPLATE = """{%- for doc in documents or [] %}{{ doc | tojson(indent=4) }}{% endfor %}
{%- for tool in tools or [] %}{{ tool | tojson(indent=4) }}{% endfor %}
{%- for m in messages %}<|im_start|>{{ m.role }}{% if m.name %} name={{ m.name }}{% endif %}
{% if m.content is string %}{{ m.content }}{% endif %}
{%- for call in m.tool_calls or [] %}<tool_call>{{ call.function.name }}
{{ call.function.arguments | tojson(indent=4) }}</tool_call>
{% endfor %}{% if m.tool_call_id %}[{{ m.tool_call_id }}]{% endif %}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
TOKEN_SCRIPT = """
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = []
for case in json.load(sys.stdin):
    if "prompt" in case:  # /v1/completions: each prompt alone, with the tokenizer's special tokens
        prompts = case["prompt"] if isinstance(case["prompt"], list) else [case["prompt"]]
        out.append(sum(len(tok(p)["input_ids"]) for p in prompts))
        continue
    for m in case["messages"]:  # vLLM joins text parts, parses tool-call arguments into objects
        if isinstance(m["content"], list):
            m["content"] = "\\n".join(part["text"] for part in m["content"])
        for call in m.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    text = tok.apply_chat_template(case["messages"], tools=case.get("tools"), documents=case.get("documents"),
                                   chat_template=case.get("template"), add_generation_prompt=True, tokenize=False)
    out.append(len(tok(text, add_special_tokens=False)["input_ids"]))
print(json.dumps(out))
"""
NUMBERS = ",".join(["1"] * 300)  # compact: 2 bytes a number; indented, each on its own line


def test_the_bound_holds_for_the_real_tokenizer() -> None:
    if not (SMOLLM2 / "tokenizer.json").is_file() and not strict():
        pytest.skip("models/smollm2 not built (make models)")
    if not ENGINE_PY.exists() and not strict():
        pytest.skip("engine venv (.venv-engine) not installed (make setup)")
    enum = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1] * 300}}}
    tools = [{"type": "function", "function": {"name": "pick", "parameters": enum}}]
    call = {"id": "c1", "type": "function", "function": {"name": "pick", "arguments": '{"n": [' + NUMBERS + "]}"}}
    parts = [{"type": "text", "text": "😀"}, {"type": "text", "text": "🙂"}]
    conversation = [
        {"role": "user", "content": "pick", "name": "名字"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "[" + NUMBERS + "]", "tool_call_id": "c1"},
    ]
    documents = [{"title": "文", "text": "一二三" * 30}]
    cases: list[dict[str, Any]] = [
        *({"prompt": text} for text, *_ in MEASURED),
        {"prompt": ["你好世界"] * 50 + ["🤣🙃"] * 50},
        {"prompt": "\x00\x01\x7f\ufffd\U0010ffff" * 20},
        *({"messages": [{"role": "user", "content": text}]} for text, *_ in MEASURED),
        {"messages": [{"role": "system", "content": "简短"}, {"role": "user", "content": parts}]},
        {"messages": conversation, "tools": tools, "documents": documents, "template": WIDE_TEMPLATE},
    ]
    requests = []
    for case in cases:
        if "prompt" in case:
            requests.append(completions(case["prompt"]))
            continue
        extra = {k: case[k] for k in ("tools", "documents") if k in case}
        requests.append(chat(json.loads(json.dumps(case["messages"])), **extra))
    result = subprocess.run(
        [str(ENGINE_PY), "-c", TOKEN_SCRIPT, str(SMOLLM2)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    for case, req, tokens in zip(cases, requests, counts, strict=True):
        assert req.prompt_tokens_max >= tokens, (case, req.prompt_tokens_max, tokens)
    # the tool-use conversation is over what compact JSON (the structures as sent) would have bounded
    compact = sum(len(json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()) for v in (tools, documents))
    compact += sum(len(json.dumps(m, ensure_ascii=False, separators=(",", ":")).encode()) for m in conversation)
    assert counts[-1] > compact + 3 * TEMPLATE_TOKENS_PER_MESSAGE + TEMPLATE_TOKENS_PER_REQUEST, (counts[-1], compact)


def test_a_structure_too_deep_to_measure_is_refused() -> None:
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(InputError) as refused:
        chat([{"role": "user", "content": "hi"}], documents=nested)
    assert refused.value.field == "openai_input" and "nested too deeply" in refused.value.message
