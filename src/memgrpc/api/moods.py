"""The agent's mood on the wire (chat side effects, SubmitTurn)."""

from __future__ import annotations

from memgrpc.api import convert
from memgrpc.core.agents.turns import Mood
from memgrpc.v1 import agent_state_pb2 as apb


def mood_to_pb(m: Mood) -> apb.Mood:
    return apb.Mood(
        label=m.label,
        valence=m.valence,
        arousal=m.arousal,
        turns=m.turns,
        source=m.source,
        update_time=convert.to_ts(m.update_time),
    )
