"""The official `openai` Python client against an OpenAI-compatible server.

Run by tests/real_clients.rs against `igw sim serve` and through `igw epp run`'s
gateway: every call a user makes first (completions, chat, streaming with usage,
batched prompts, n=2, logprobs) must come back in the shapes the client's types
expect, and errors must raise the client's exception classes with JSON bodies.

Usage: openai_check.py BASE_URL MODEL {sim,gateway}

Prints one line per check; exits non-zero, naming the check, on the first failure.
"""

import sys

import openai

BASE, MODEL, SIDE = sys.argv[1], sys.argv[2], sys.argv[3]

# No retries: a retried 5xx or 429 would hide the status under test.
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=60)


def check(name, ok, detail=""):
    if not ok:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def completions():
    r = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=5)
    check("completion: one choice with text", len(r.choices) == 1 and r.choices[0].text, r)
    check("completion: finish_reason", r.choices[0].finish_reason in ("length", "stop"), r)
    u = r.usage
    check(
        "completion: usage adds up",
        u.completion_tokens == 5 and u.total_tokens == u.prompt_tokens + 5,
        u,
    )


def chat():
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    m = r.choices[0].message
    check("chat: assistant message", m.role == "assistant" and m.content, r)
    check("chat: usage", r.usage.completion_tokens == 4, r.usage)


def streaming():
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Stream please"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check("chat stream: content arrives in chunks", len(chunks) > 2 and text, chunks)
    last = chunks[-1]
    check(
        "chat stream: the last chunk carries usage and no choices",
        last.usage is not None and last.usage.completion_tokens == 6 and not last.choices,
        last,
    )
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Stream",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    check(
        "completion stream: usage at the end",
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3,
        chunks[-1],
    )


def batched():
    r = client.completions.create(model=MODEL, prompt=["one", "two two", "three"], max_tokens=2)
    check("batched prompts: one choice each", len(r.choices) == 3, r)
    check("batched prompts: indexes in order", [c.index for c in r.choices] == [0, 1, 2], r)
    check("batched prompts: usage summed", r.usage.completion_tokens == 6, r.usage)


def n_choices():
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Two please"}], max_tokens=3, n=2
    )
    check("n=2: two choices", sorted(c.index for c in r.choices) == [0, 1], r)
    check("n=2: usage counts both", r.usage.completion_tokens == 6, r.usage)


def logprobs():
    r = client.completions.create(model=MODEL, prompt="Log", max_tokens=4, logprobs=2)
    lp = r.choices[0].logprobs
    check(
        "completion logprobs: one per token",
        lp is not None and len(lp.tokens) == 4 and len(lp.token_logprobs) == 4,
        lp,
    )
    check("completion logprobs: not positive", all(x <= 0 for x in lp.token_logprobs), lp)
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Log"}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
    )
    content = r.choices[0].logprobs.content
    check("chat logprobs: one per token", len(content) == 3, r.choices[0].logprobs)
    check(
        "chat logprobs: top_logprobs sorted",
        all(
            len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
            for t in content
        ),
        content,
    )


def raises(name, cls, call, status):
    try:
        call()
    except cls as e:
        check(f"{name}: {cls.__name__} {status}", e.status_code == status, e)
        check(
            f"{name}: a JSON error body with a message",
            isinstance(e.body, dict) and isinstance(e.body.get("message"), str),
            e.body,
        )
        return e
    except openai.APIError as e:
        check(name, False, f"raised {type(e).__name__}: {e}")
    check(name, False, "no error raised")


def errors():
    raises(
        "unknown model",
        openai.NotFoundError,
        lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=1),
        404,
    )
    raises(
        "bad request",
        openai.BadRequestError,
        lambda: client.completions.create(model=MODEL, prompt="x", max_tokens=-1),
        400,
    )
    if SIDE == "gateway":
        # The gateway's own refusal, before any model server: a body over its
        # --max-body-bytes (the test sets 64 KiB). 413 has no class of its own in the
        # client; it is the APIStatusError every status error derives from.
        e = raises(
            "gateway: body too large",
            openai.APIStatusError,
            lambda: client.completions.create(model=MODEL, prompt="x" * 100_000, max_tokens=1),
            413,
        )
        check(
            "gateway: GIE's text inside the message",
            e.body["message"].startswith("inference error: PayloadTooLarge"),
            e.body,
        )


for step in (completions, chat, streaming, batched, n_choices, logprobs, errors):
    step()
print("all checks passed", flush=True)
