"""Turns a decision into two or three plain sentences: Claude when configured, else the template.

The prompt holds only the measured numbers, the rule clause and the call, so the model cannot invent
facts; it is hashed, and answers are cached by that hash so a replayed meet costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from referee.decision import AttemptDecision
from referee.depth import DepthResult
from referee.explanation import RULE_CLAUSE, template_explanation
from stream_processors.schemas import canonical_json

log = structlog.get_logger()

DEFAULT_MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True, slots=True)
class Explanation:
    text: str
    model: str  # the Claude model, or "template"
    prompt_hash: str


class ExplanationCache(Protocol):
    """Where answers are kept by prompt hash; a dict works, the dashboard passes its database."""

    def get(self, key: str) -> Explanation | None: ...

    def __setitem__(self, key: str, value: Explanation) -> None: ...


DeltaSink = Callable[[str], Awaitable[None]]


def build_prompt(decision: AttemptDecision) -> str:
    return prompt_for_attempt(decision.to_json())


def prompt_for_attempt(attempt: Mapping[str, Any]) -> str:
    """The prompt from an attempt as the ``decisions`` topic carries it (``AttemptDecision.to_json``):
    the dashboard, which only has the message, builds exactly the prompt the referee built."""
    d = attempt["depth"]
    facts = {
        "rep": attempt["rep"],
        "call": attempt["verdict"],
        "depth_status": d["status"],
        "margin_cm": d["margin_cm"],
        "margin_thigh_lengths": d["margin_thigh"],
        "confidence": d["confidence"],
        "side_judged": d["side"],
        "camera_view_yaw_deg": d["view_yaw_deg"],
        "reasons": list(attempt["reasons"]),
        **{k: d[k] for k in ("margin_cm_interval", "surface", "scale") if d.get(k) is not None},
    }
    return (
        "You explain a powerlifting squat depth call to the lifter. "
        f"{RULE_CLAUSE} Measured facts (positive margin = hip crease below the top of the knee): "
        f"{canonical_json(facts)}. Write two or three plain sentences a lifter would accept. "
        "Use only these numbers; do not speculate beyond them."
    )


def decision_from_attempt(attempt: Mapping[str, Any]) -> AttemptDecision:
    """Rebuild the decision from its JSON, so the template fallback is the very same function."""
    d = attempt["depth"]
    times = attempt.get("capture_us") or {}
    bottom_us = int(times.get("bottom", 0))
    origin_us = bottom_us - round(float(attempt["bottom_s"]) * 1e6)
    depth = DepthResult(
        status=d["status"],
        margin_thigh=d["margin_thigh"],
        margin_cm=d["margin_cm"],
        confidence=d["confidence"],
        bottom_us=bottom_us,
        side=d["side"],
        view_yaw_deg=d["view_yaw_deg"],
        reasons=tuple(attempt["reasons"]) if d["status"] == "undecided" else (),
        landmarks=d.get("landmarks") or {},
        margin_cm_interval=None if not d.get("margin_cm_interval") else tuple(d["margin_cm_interval"]),
        uncertainty_thigh=d.get("uncertainty_thigh"),
        surface=d.get("surface"),
        scale=d.get("scale"),
        measured=d.get("measured"),
    )
    return AttemptDecision(
        rep=int(attempt["rep"]),
        origin_us=origin_us,
        start_us=int(times.get("start", bottom_us)),
        bottom_us=bottom_us,
        end_us=int(times.get("end", bottom_us)),
        depth=depth,
        verdict=attempt["verdict"],
        cards=tuple(attempt["cards"]),
        reasons=tuple(attempt["reasons"]),
        ended_by=attempt.get("ended_by", ""),
        model_id=attempt.get("model_id", ""),
        rules_version=attempt.get("rules_version", ""),
    )


class Explainer:
    """``explain`` answers whole (the referee app); ``stream`` hands each piece of text to a sink as
    Claude produces it (the dashboard pushes them to the page). Both share the cache and fall back
    to the template on no key, an error or ``timeout_s`` for the whole answer."""

    def __init__(
        self,
        api_key: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 8.0,
        cache: ExplanationCache | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        self.model = model or os.environ.get("MEETVAR_CLAUDE_MODEL", DEFAULT_MODEL)
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
        self.timeout_s = timeout_s
        self._cache: ExplanationCache = cache if cache is not None else {}
        if self.api_key:
            # The SDK takes seconds to import: here, not inside the first answer's timeout, and not on
            # the event loop in the middle of a meet.
            importlib.import_module("anthropic")

    def prompt_hash(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()[:16]

    async def explain(self, decision: AttemptDecision) -> Explanation:
        return await self.explain_attempt(decision.to_json())

    async def explain_attempt(
        self, attempt: Mapping[str, Any], on_delta: DeltaSink | None = None
    ) -> Explanation:
        prompt = prompt_for_attempt(attempt)
        key = self.prompt_hash(prompt)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = Explanation(template_explanation(decision_from_attempt(attempt)), "template", key)
        if self.api_key:
            try:
                async with asyncio.timeout(self.timeout_s):
                    text = await self._ask_claude(prompt, on_delta)
                result = Explanation(text, self.model, key)
            except Exception as exc:  # timeouts, HTTP errors: the template keeps the dashboard complete
                log.warning(
                    "explanation.fallback", reason=str(exc)[:200] or type(exc).__name__, model=self.model
                )
                # Not cached: the next request for these numbers tries Claude again.
                return result
        self._cache[key] = result
        return result

    async def stream(self, attempt: Mapping[str, Any], on_delta: DeltaSink) -> Explanation:
        return await self.explain_attempt(attempt, on_delta)

    async def _ask_claude(self, prompt: str, on_delta: DeltaSink | None = None) -> str:
        import anthropic

        client = anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=1
        )
        messages: Any = [{"role": "user", "content": prompt}]
        if on_delta is None:
            msg = await client.messages.create(model=self.model, max_tokens=220, messages=messages)
            text = "".join(getattr(block, "text", "") for block in msg.content).strip()
        else:
            parts: list[str] = []
            async with client.messages.stream(model=self.model, max_tokens=220, messages=messages) as stream:
                async for piece in stream.text_stream:
                    parts.append(piece)
                    await on_delta(piece)
            text = "".join(parts).strip()
        if not text:
            raise ValueError("empty answer from the model")
        return text
