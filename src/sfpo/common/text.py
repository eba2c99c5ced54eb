"""Reading a completion: its plain text, its last ``\\boxed{}`` answer, or its best-effort final answer.

Shared by every domain (math rewards and data, code rewards, the toy tasks, the evaluation loop). Completions
arrive as TRL passes them: plain strings, or conversational lists (``[{"role": "assistant", "content": ...}]``).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

__all__ = ["completion_text", "extract_answer", "extract_boxed"]


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """Last match of ``pattern`` in ``text``, in one linear scan."""
    tail = deque(pattern.finditer(text), maxlen=1)
    return tail[0] if tail else None


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)  # escaped chars are skipped, so \{ \} never count
_BARE_BOX_ARG_RE = re.compile(r"[ \t]+([^\s$]+)")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text`` (nested braces handled).

    ``\\boxed 5`` (no braces) gives ``"5"``. When the last box is unterminated (a truncated completion)
    the result is ``None``, as in the reference code: an earlier box is not used instead.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    last = _last_match(_BOX_RE, text)
    if last is None:
        return None
    pos = last.end()
    if pos < len(text) and text[pos] == "{":
        depth = 0
        for tok in _BRACE_TOKEN_RE.finditer(text, pos):
            t = tok.group()
            if t == "{":
                depth += 1
            elif t == "}":
                depth -= 1
                if depth == 0:
                    return text[pos + 1 : tok.start()].strip()
        return None
    bare = _BARE_BOX_ARG_RE.match(text, pos)
    if bare:
        return bare.group(1).rstrip(".")
    return None


_HASH_ANSWER_RE = re.compile(r"####[ \t]*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"(?i)(?:final answer|answer)[ \t]*(?:is|:)[ \t:]*([^\n]+)")
_LAST_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")


def extract_answer(text: str) -> str | None:
    """Best-effort final answer of a completion, for scoring without a required box.

    Order: (1) the last ``\\boxed{}``/``\\fbox{}`` answer; (2) the last GSM8K-style ``#### X`` line;
    (3) the last "final answer is X" / "answer is X" / "Answer: X" (to the end of that sentence or line);
    (4) the last number in the text (``-1,234.5`` or ``3/4``). ``None`` when none of them is found.
    """
    if not isinstance(text, str):
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    for pattern in (_HASH_ANSWER_RE, _ANSWER_IS_RE):
        m = _last_match(pattern, text)
        if m:
            candidate = m.group(1)
            end = _SENTENCE_END_RE.search(candidate)
            if end:
                candidate = candidate[: end.start()]
            candidate = candidate.strip().strip("$").strip()
            if candidate:
                return candidate
    m = _last_match(_LAST_NUMBER_RE, text)
    if m:
        return m.group().replace(",", "")
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal-style parts: [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def completion_text(completion: Any) -> str:
    """Plain text of a completion: a string, or the assistant messages of a conversational list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        chosen = [m for m in messages if m.get("role") == "assistant"] or messages
        return "\n".join(_content_text(m.get("content")) for m in chosen)
    return ""
