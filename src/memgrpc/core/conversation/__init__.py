"""Conversations: users (explicit and implicit, with activity), sessions, their messages,
processing jobs, and the purge or rename of a user across every table.

Exported here: the records and the registry of implicit users, which core.memory builds on. The
services (users, sessions, messages, jobs) build on core.memory in turn, so importing them here
would close a cycle (memory.service -> conversation.activity -> this package -> messages ->
memory.service): import them from their modules, e.g. core.conversation.sessions.
"""

from memgrpc.core.conversation.activity import UserRegistry
from memgrpc.core.conversation.records import (
    JOB_STATES,
    SESSION_STATUSES,
    Job,
    JobState,
    Message,
    Session,
    SessionStatus,
    User,
)

__all__ = [
    "JOB_STATES",
    "SESSION_STATUSES",
    "Job",
    "JobState",
    "Message",
    "Session",
    "SessionStatus",
    "User",
    "UserRegistry",
]
