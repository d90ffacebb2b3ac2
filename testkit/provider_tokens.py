"""A provider that counts tokens its own way, not the way LiteLLM's tokenizer for the model name does.

Real providers (a gateway, a local server serving a model under another model's name) count with
their own tokenizer. With ``FakeLLMServer.chars_per_token`` set, the test server counts a request's
prompt as its characters divided by that number (3.5 reads like many open models on English), bills
with that count, and refuses a request above its ``context_tokens`` with OpenAI's exact wording:
"your messages resulted in N tokens" when the messages alone are over, "you requested N tokens
(P in the messages, C in the completion)" when the answer's room tips it over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _text(body: Mapping[str, Any]) -> str:
    pieces: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces.extend(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and isinstance(response_format.get("json_schema"), Mapping):
        pieces.append(json.dumps(response_format["json_schema"].get("schema")))
    return "".join(pieces)


def char_prompt_tokens(body: Mapping[str, Any], chars_per_token: float) -> int:
    """The prompt's tokens as this provider counts them: characters / chars_per_token, plus framing."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return 3 + 3 * len(messages) + math.ceil(len(_text(body)) / chars_per_token)


def answer_room(body: Mapping[str, Any]) -> int:
    answer = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    return answer if isinstance(answer, int) else 0


def char_refusal(body: Mapping[str, Any], window: int, chars_per_token: float) -> dict[str, Any] | None:
    """OpenAI's 400 body when the request does not fit `window` by this provider's count, else None."""
    prompt, answer = char_prompt_tokens(body, chars_per_token), answer_room(body)
    if prompt > window:
        message = (f"This model's maximum context length is {window} tokens. However, your messages resulted in "
                   f"{prompt} tokens. Please reduce the length of the messages.")
    elif prompt + answer > window:
        message = (f"This model's maximum context length is {window} tokens. However, you requested "
                   f"{prompt + answer} tokens ({prompt} in the messages, {answer} in the completion). "
                   "Please reduce the length of the messages or completion.")
    else:
        return None
    return {"error": {"message": message, "type": "invalid_request_error", "param": "messages",
                      "code": "context_length_exceeded"}}


def char_usage(usage: dict[str, Any], body: Mapping[str, Any], chars_per_token: float) -> dict[str, Any]:
    """The completion's usage billed with this provider's prompt count."""
    prompt = char_prompt_tokens(body, chars_per_token)
    return {**usage, "prompt_tokens": prompt, "total_tokens": prompt + int(usage.get("completion_tokens", 0))}
