"""How an agent speaks: its personality and current mood rendered as a few short lines of a
system prompt. Deterministic text, so a model (or a test) sees the same persona every turn."""

from __future__ import annotations

from memgrpc.core.agents.model import Agent, Personality
from memgrpc.core.agents.turns import Mood

HIGH, LOW = 0.65, 0.35  # a Big Five score outside (LOW, HIGH) shapes the style
_TRAITS = {
    "openness": ("curious and open to new ideas", "practical and down to earth"),
    "conscientiousness": ("careful and organised", "relaxed and spontaneous"),
    "extraversion": ("outgoing and talkative", "calm and reserved"),
    "agreeableness": ("warm and accommodating", "frank and direct"),
    "neuroticism": ("sensitive and easily moved", "steady and even-tempered"),
}


def style(p: Personality) -> str:
    """One sentence: the marked Big Five traits, then the named dimensions (0-10)."""
    words = []
    for trait, (high, low) in _TRAITS.items():
        score = p.big_five.get(trait, 0.5)
        if score >= HIGH:
            words.append(high)
        elif score <= LOW:
            words.append(low)
    dims = [f"{name} {value:g}/10" for name, value in sorted(p.dimensions.items())]
    parts = []
    if words:
        parts.append("Your manner is " + ", ".join(words) + ".")
    if dims:
        parts.append("On a 0-10 scale your style is: " + ", ".join(dims) + ".")
    return " ".join(parts)


def mood_line(m: Mood) -> str:
    feel = "pleasant" if m.valence > 0.2 else "unpleasant" if m.valence < -0.2 else "neutral"
    energy = "energetic" if m.arousal > 0.6 else "calm" if m.arousal < 0.3 else "moderately alert"
    return (
        f"Your current mood is {m.label} ({feel}, {energy}; valence {m.valence:+.2f}, "
        f"arousal {m.arousal:.2f}); let it colour your tone, not your facts."
    )


def persona(agent: Agent, mood: Mood | None) -> str:
    """The agent's part of a system prompt, after its own instructions."""
    lines = [f"You are {agent.display_name}."] if agent.display_name else []
    if text := style(agent.personality):
        lines.append(text)
    if mood is not None:
        lines.append(mood_line(mood))
    return " ".join(lines)
