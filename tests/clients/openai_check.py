"""The official `openai` Python client against an OpenAI-compatible server.

Run by tests/real_clients.rs against `igw sim serve` and through `igw epp run`'s
gateway: every call a user makes first (completions, chat, streaming with usage)
must come back in the shapes the client's types expect, and errors must raise the
client's exception classes with JSON bodies.

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


for step in (completions, chat, streaming, errors):
    step()
print("all checks passed", flush=True)
