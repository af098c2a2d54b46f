"""With an LLM configured, the LLM plays the persona: it phrases each scripted turn in the
persona's voice. The script still decides what is said (the fact told, the question asked), so
the run keeps its ground truth and the judge can check recall against it."""

from __future__ import annotations

from collections.abc import Sequence

from memgrpc.core.kernel.provider_errors import provider_failure
from memgrpc.core.simulation.model import Persona, Turn
from memgrpc.core.simulation.persona import UserTurn
from memgrpc.llm import ChatMessage, Provider, ProviderError

HISTORY = 8
_DO = {
    "tell": "tell the assistant this about yourself",
    "change": "tell the assistant that this has changed",
    "probe": "ask the assistant this recall question",
    "chat": "say this",
}

PERSONA_SYSTEM = """You play a user talking to an AI assistant, in character.
You are {name}. Background: {background}
Personality traits: {traits}. Communication style: {style}.
Write only your next chat message (one or two sentences, no quotes, no stage directions).
In it, {do}: "{text}". Keep its facts exactly as given."""


async def phrase(
    provider: Provider, model: str, p: Persona, turn: UserTurn, so_far: Sequence[Turn]
) -> str:
    system = PERSONA_SYSTEM.format(
        name=p.name,
        background=p.background,
        traits=", ".join(p.personality_traits) or "none given",
        style=p.communication_style or "plain",
        do=_DO.get(turn.intent, "say this"),
        text=turn.text,
    )
    # the roles swap: the persona's model sees the assistant's replies as the other side
    history = [
        ChatMessage("assistant" if t.role == "user" else "user", t.content)
        for t in so_far[-HISTORY:]
    ]
    prompt = [ChatMessage("system", system), *history, ChatMessage("user", "Your message:")]
    try:
        text = "".join([d async for d in provider.stream(prompt, model, 0.7, 300)])
    except ProviderError as exc:
        raise provider_failure(exc) from exc
    return text.strip() or turn.text
