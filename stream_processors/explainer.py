"""Turns a decision into two or three plain sentences: Claude when configured, else the template.

The prompt holds only the measured numbers, the rule clause and the call, so the model cannot invent
facts; it is hashed, and answers are cached by that hash so a replayed meet costs nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import structlog

from referee.decision import AttemptDecision
from referee.explanation import RULE_CLAUSE, template_explanation
from stream_processors.schemas import canonical_json

log = structlog.get_logger()

DEFAULT_MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True, slots=True)
class Explanation:
    text: str
    model: str  # the Claude model, or "template"
    prompt_hash: str


def build_prompt(decision: AttemptDecision) -> str:
    d = decision.depth
    facts = {
        "rep": decision.rep,
        "call": decision.verdict,
        "depth_status": d.status,
        "margin_cm": d.margin_cm,
        "margin_thigh_lengths": d.margin_thigh,
        "confidence": d.confidence,
        "side_judged": d.side,
        "camera_view_yaw_deg": d.view_yaw_deg,
        "reasons": list(decision.reasons),
    }
    return (
        "You explain a powerlifting squat depth call to the lifter. "
        f"{RULE_CLAUSE} Measured facts (positive margin = hip crease below the top of the knee): "
        f"{canonical_json(facts)}. Write two or three plain sentences a lifter would accept. "
        "Use only these numbers; do not speculate beyond them."
    )


class Explainer:
    def __init__(
        self,
        api_key: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 8.0,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        self.model = model or os.environ.get("MEETVAR_CLAUDE_MODEL", DEFAULT_MODEL)
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
        self.timeout_s = timeout_s
        self._cache: dict[str, Explanation] = {}

    async def explain(self, decision: AttemptDecision) -> Explanation:
        prompt = build_prompt(decision)
        key = hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()[:16]
        if key in self._cache:
            return self._cache[key]
        result = Explanation(template_explanation(decision), "template", key)
        if self.api_key:
            try:
                result = Explanation(await self._ask_claude(prompt), self.model, key)
            except Exception as exc:  # timeouts, HTTP errors: the template keeps the dashboard complete
                log.warning("explanation.fallback", reason=str(exc)[:200], model=self.model)
        self._cache[key] = result
        return result

    async def _ask_claude(self, prompt: str) -> str:
        import anthropic

        client = anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=1
        )
        msg = await client.messages.create(
            model=self.model, max_tokens=220, messages=[{"role": "user", "content": prompt}]
        )
        text = "".join(getattr(block, "text", "") for block in msg.content).strip()
        if not text:
            raise ValueError("empty answer from the model")
        return text
