"""Chat with memory: context assembly (and its DEEP strategy), the streamed turn, background
turns, and the replay that makes a retried turn never run twice."""

from memgrpc.core.chat.background import BackgroundChats, ChatResult
from memgrpc.core.chat.context import ContextRequest, ContextService, Strategy
from memgrpc.core.chat.events import ChatEvent, ContextUsed, Delta, Done, Failed, Started
from memgrpc.core.chat.replay import ChatReplays
from memgrpc.core.chat.turn import ChatRequest, ChatService

__all__ = [
    "BackgroundChats",
    "ChatEvent",
    "ChatReplays",
    "ChatRequest",
    "ChatResult",
    "ChatService",
    "ContextRequest",
    "ContextService",
    "ContextUsed",
    "Delta",
    "Done",
    "Failed",
    "Started",
    "Strategy",
]
