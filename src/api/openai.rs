//! OpenAI-compatible request and response bodies, as vLLM accepts and emits them.
