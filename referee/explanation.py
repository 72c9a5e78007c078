"""The deterministic plain-language explanation, used when Claude is not configured or times out.

It is built only from the decision's own numbers, so it can never say more than was measured.
"""

from __future__ import annotations

from referee.decision import AttemptDecision

RULE_CLAUSE = (
    "IPF rule: the lifter must bend the knees and lower the body until the top surface of the legs "
    "at the hip joint is lower than the top of the knees."
)


def template_explanation(decision: AttemptDecision) -> str:
    d = decision.depth
    at = f"at {decision.seconds(decision.bottom_us):.1f} s"
    if d.status == "undecided":
        why = "; ".join(d.reasons) or "the view did not show it"
        if d.margin_cm_interval is not None:
            low, high = d.margin_cm_interval
            return (
                f"Rep {decision.rep}: {why} — the margin lies between {low:+.1f} and {high:+.1f} cm, "
                "on both sides of the line. Refer to the referees: their own view decides this attempt."
            )
        return f"Rep {decision.rep}: no call on depth — {why}. A referee's own view decides this attempt."
    assert d.margin_cm is not None
    where = "below" if d.status == "below" else "above"
    # Confidence is the probability that the call is right; a call is only made at 95 % or more.
    sure = "clearly" if d.confidence >= 0.99 else "probably"
    outcome = "good lift on depth" if d.status == "below" else "no lift: depth not reached (red card)"
    return (
        f"Rep {decision.rep}: at the bottom ({at}) the hip crease was {sure} {where} the top of the knee, "
        f"by {abs(d.margin_cm):.1f} cm. Call: {outcome}. Confidence {d.confidence:.2f}."
    )
