"""Explicit pyarrow schemas of every table. Columns added later must be nullable."""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STRS = pa.list_(pa.string())


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


PROJECTS = pa.schema(
    [_f("id", pa.string(), False), _f("display_name", pa.string()), _f("create_time", TS)]
)

API_KEYS = pa.schema(
    [
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("name", pa.string()),
        _f("prefix", pa.string()),
        _f("secret_hash", pa.string()),
        _f("scopes", STRS),
        _f("bootstrap", pa.bool_()),
        _f("create_time", TS),
        _f("revoke_time", TS),
    ]
)

USERS = pa.schema(
    [
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("id", pa.string(), False),
        _f("metadata", pa.string()),
        _f("create_time", TS),
        _f("last_active_time", TS),
        # "key=<canonical json>" per top-level metadata key, for exact-match filters
        _f("metadata_kv", STRS),
    ]
)


def memories(dim: int) -> pa.Schema:
    return pa.schema(
        [
            _f("id", pa.string(), False),
            _f("project_id", pa.string(), False),
            _f("user_id", pa.string(), False),
            _f("session_id", pa.string()),
            _f("content", pa.string()),
            _f("type", pa.string()),
            _f("tags", STRS),
            _f("categories", STRS),
            _f("metadata", pa.string()),
            # "key=<canonical json>" per top-level metadata key, for exact-match filters
            _f("metadata_kv", STRS),
            _f("importance", pa.float32()),
            _f("archived", pa.bool_()),
            _f("source_message_ids", STRS),
            _f("version", pa.int32()),
            _f("event_time", TS),
            _f("create_time", TS),
            _f("update_time", TS),
            # when the current content version began
            _f("version_time", TS),
            # memories made from messages: the speaker and the message's order in its session
            _f("speaker", pa.string()),
            _f("seq", pa.int64()),
            # client | message | summary | extracted | action; NULL on rows written before
            # origins were recorded (they read as the origin their type implies)
            _f("origin", pa.string()),
            # extracted facts: the profile slot a memory backs, mentions, last mention
            _f("profile_slot", pa.string()),
            _f("mention_count", pa.int32()),
            _f("last_mentioned_time", TS),
            # lowercase names of what it mentions: memories sharing one are connected
            _f("entities", STRS),
            # the pending merge conflict it is part of
            _f("conflict_id", pa.string()),
            # the agent (and instance) whose memory of the user it is; null = the user's general
            # memory, seen by every agent (core/memory/model.MemoryQuery)
            _f("agent_id", pa.string()),
            _f("instance_id", pa.string()),
            _f("vector", pa.list_(pa.float32(), dim)),
            # the other columns but metadata_kv and the vector, as JSON: what reads select
            # (store/memories.py)
            _f("doc", pa.string()),
        ]
    )


MEMORY_VERSIONS = pa.schema(
    [
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string()),
        _f("memory_id", pa.string(), False),
        _f("version", pa.int32()),
        _f("content", pa.string()),
        _f("type", pa.string()),
        _f("tags", STRS),
        _f("metadata", pa.string()),
        _f("create_time", TS),
        _f("expire_time", TS),
        _f("expire_reason", pa.string()),
        # the memory's agent scope (purged with the agent or instance)
        _f("agent_id", pa.string()),
        _f("instance_id", pa.string()),
    ]
)

CATEGORIES = pa.schema(
    [
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        # "set": the project's chosen categories (one row, `categories` as JSON);
        # "memory": one row per category name a memory of the project was written with
        _f("kind", pa.string()),
        _f("name", pa.string()),
        _f("categories", pa.string()),
        _f("update_time", TS),
    ]
)

REQUESTS = pa.schema(
    [
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("method", pa.string()),
        _f("response", pa.binary()),
        _f("create_time", TS),
        # the end user the recorded response belongs to, so a purge can remove it
        _f("user_id", pa.string()),
    ]
)

SESSIONS = pa.schema(
    [
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string(), False),
        _f("title", pa.string()),
        _f("metadata", pa.string()),
        _f("metadata_kv", STRS),
        # active | processing | processed | failed
        _f("status", pa.string()),
        _f("auto_process_after_s", pa.float64()),
        # last message (or creation); idleness is measured from here
        _f("active_time", TS),
        # active_time + auto_process_after: the sweeper's pushed-down "due" condition
        _f("auto_process_at", TS),
        _f("job_id", pa.string()),
        _f("message_count", pa.int64()),
        _f("create_time", TS),
        _f("update_time", TS),
        # the agent / instance the session talks to (null = none); chat defaults
        _f("agent_id", pa.string()),
        _f("instance_id", pa.string()),
        _f("provider", pa.string()),
        _f("model", pa.string()),
    ]
)

MESSAGES = pa.schema(
    [
        # session id + message id: client ids are only unique within their session
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string(), False),
        _f("session_id", pa.string(), False),
        _f("id", pa.string(), False),
        # position in the session, from 0
        _f("seq", pa.int64()),
        _f("role", pa.string()),
        _f("name", pa.string()),
        _f("content", pa.string()),
        _f("metadata", pa.string()),
        _f("create_time", TS),
        _f("memory_id", pa.string()),
        _f("interrupted", pa.bool_()),
        # the session's agent / instance (null = none)
        _f("agent_id", pa.string()),
        _f("instance_id", pa.string()),
    ]
)

JOBS = pa.schema(
    [
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string()),
        _f("session_id", pa.string()),
        _f("kind", pa.string()),
        # queued | running | done | failed
        _f("state", pa.string()),
        _f("error", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
        # JobStats: what extraction did (core/intelligence/step.py)
        _f("extractor", pa.string()),
        _f("facts_extracted", pa.int32()),
        _f("facts_added", pa.int32()),
        _f("facts_reinforced", pa.int32()),
        _f("versions_made", pa.int32()),
        _f("conflicts_opened", pa.int32()),
    ]
)

CHAT_RESULTS = pa.schema(
    [
        # `chat_...`: one background chat turn (ChatAsync)
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string()),
        _f("session_id", pa.string()),
        # queued | running | complete | failed
        _f("status", pa.string()),
        # the reply so far (partial while running)
        _f("response", pa.string()),
        _f("user_message_id", pa.string()),
        _f("assistant_message_id", pa.string()),
        # [[memory id, score], ...] recalled for the turn (read back by id: deletions apply)
        _f("memories", pa.string()),
        _f("prompt_tokens", pa.int32()),
        _f("completion_tokens", pa.int32()),
        # canonical code name (e.g. RESOURCE_EXHAUSTED), message and reason of a failed turn
        _f("error_code", pa.string()),
        _f("error_message", pa.string()),
        _f("error_reason", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
        # while running: recall | generating | storing | side_effects
        _f("phase", pa.string()),
        # JSON: {facts_extracted, memory_ids, mood_before, mood_after} once complete
        _f("side_effects", pa.string()),
        # JSON: [{id, name, arguments}, ...] the model's tool calls
        _f("tool_calls", pa.string()),
    ]
)

CONFLICTS = pa.schema(
    [
        # `cfl_...`, derived from the opener's key: a re-run finds the conflict it opened
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("user_id", pa.string(), False),
        _f("session_id", pa.string()),
        # pending | in_queue | resolving | resolved | failed
        _f("status", pa.string()),
        # the new fact as JSON: not a memory until the conflict is resolved in its favour
        _f("new_memory", pa.string()),
        # [{"id", "reason", "content"}] as JSON (content: what the memory said when it opened)
        _f("conflicting", pa.string()),
        # the conflicting memories' ids again, for "which pending conflicts name this memory"
        _f("memory_ids", STRS),
        # [{"question", "options", "choices"}] as JSON
        _f("questions", pa.string()),
        # [{"question", "answer", "message"}] as JSON, once answered
        _f("answers", pa.string()),
        _f("resolution", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
        _f("resolve_time", TS),
    ]
)


EVAL_TEMPLATES = pa.schema(
    [
        # `tpl_...`
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("name", pa.string()),
        _f("scoring_rubric", pa.string()),
        # [{"name", "weight", "criteria"}] as JSON
        _f("categories", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
    ]
)

RUNS = pa.schema(
    [
        # `run_...`
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string()),
        # simulation, run_eval, eval_only
        _f("kind", pa.string()),
        # queued, running, completed, failed, cancelled
        _f("status", pa.string()),
        # {"persona": {...}, "config": {...}, "template_id", "source_run_id", "judge"} as JSON
        _f("spec", pa.string()),
        _f("user_id", pa.string()),
        _f("sessions_done", pa.int32()),
        _f("turns_done", pa.int32()),
        _f("score", pa.float64()),
        _f("recall_correct", pa.int32()),
        _f("recall_total", pa.int32()),
        _f("error", pa.string()),
        _f("event_count", pa.int32()),
        # set by CancelRun on any replica; the owner stops at its next step
        _f("cancel_requested", pa.bool_()),
        # the owner renews it while the run goes on; a stale lease means the owner is gone
        _f("lease_time", TS),
        _f("create_time", TS),
        _f("update_time", TS),
        _f("end_time", TS),
    ]
)

RUN_EVENTS = pa.schema(
    [
        # `<run_id>/<index>`
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("run_id", pa.string(), False),
        _f("index", pa.int32(), False),
        _f("type", pa.string()),
        _f("message", pa.string()),
        # JSON object
        _f("data", pa.string()),
        _f("time", TS),
    ]
)
AGENTS = pa.schema(
    [
        # `agt_...`
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("display_name", pa.string()),
        _f("system_prompt", pa.string()),
        # {"big_five": {trait: score}, "dimensions": {name: score}} as JSON
        _f("personality", pa.string()),
        # {"memory_mode": "sync" | "async", capability: bool, ...} as JSON
        _f("capabilities", pa.string()),
        _f("metadata", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
    ]
)

AGENT_INSTANCES = pa.schema(
    [
        # `ins_...`
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string(), False),
        _f("display_name", pa.string()),
        _f("metadata", pa.string()),
        _f("create_time", TS),
        # the last ResetInstance (null = never reset)
        _f("reset_time", TS),
    ]
)

AGENT_STATES = pa.schema(
    [
        # a hash of the composite key (project, agent, instance, scope, user, key)
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string(), False),
        # null = the agent's default state
        _f("instance_id", pa.string()),
        # global | user
        _f("scope", pa.string()),
        # null for global states
        _f("user_id", pa.string()),
        _f("key", pa.string()),
        # application/json (value is JSON text) | text/plain (value is the text)
        _f("content_type", pa.string()),
        _f("value", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
    ]
)

PROVIDER_KEYS = pa.schema(
    [
        # `pvk_...`
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        # openai | gemini | xai | openrouter
        _f("provider", pa.string()),
        # the first characters of the key, to recognise it; the key itself only sealed
        _f("key_prefix", pa.string()),
        # AES-256-GCM (core/providers/crypto.py) of the key, bound to (project_id, id)
        _f("nonce", pa.binary()),
        _f("ciphertext", pa.binary()),
        _f("base_url", pa.string()),
        _f("default_model", pa.string()),
        _f("is_active", pa.bool_()),
        # healthy | unhealthy | null (never checked)
        _f("health", pa.string()),
        _f("last_check_time", TS),
        _f("last_error", pa.string()),
        _f("create_time", TS),
        _f("update_time", TS),
    ]
)

AGENT_RELATIONS = pa.schema(
    [
        # project, agent, instance, user (core/agents/engine/relations.py relation_pk)
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string(), False),
        # null = the agent's default state
        _f("instance_id", pa.string()),
        _f("user_id", pa.string(), False),
        _f("mood_label", pa.string()),
        _f("valence", pa.float64()),
        _f("arousal", pa.float64()),
        _f("mood_turns", pa.int32()),
        # lexicon | llm
        _f("mood_source", pa.string()),
        _f("mood_time", TS),
        _f("familiarity", pa.float64()),
        _f("affinity", pa.float64()),
        _f("description", pa.string()),
        _f("relation_source", pa.string()),
        _f("sessions", pa.int32()),
        _f("messages", pa.int32()),
        # extracted facts learned in the agent's sessions (familiarity grows with them)
        _f("facts", pa.int32()),
        # the latest message time seen (message times, so past conversations stay past)
        _f("last_interaction_time", TS),
        # JSON: the last message keys observed (observe_turn is idempotent by message) and
        # session ids counted
        _f("seen", pa.string()),
        _f("session_ids", pa.string()),
        # JSON: dated events / tasks the user mentioned (core/agents/engine/dates.py)
        _f("events", pa.string()),
        # the last_interaction_time an inactivity notification was made for
        _f("inactivity_noticed", TS),
        # when the notification sweep should look at this row next (null = nothing to check)
        _f("next_check_time", TS),
        _f("update_time", TS),
    ]
)

AGENT_DIARY = pa.schema(
    [
        # project, agent, instance, day, user: one row per user met that day; an entry is a day
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string(), False),
        _f("instance_id", pa.string()),
        _f("user_id", pa.string(), False),
        # YYYY-MM-DD (UTC, from the message times)
        _f("day", pa.string(), False),
        # JSON {session_id: {"messages": n, "facts": [text, ...], "names": [...]}}
        _f("sessions", pa.string()),
        # this user's paragraph of the day's entry
        _f("text", pa.string()),
        # template | llm
        _f("source", pa.string()),
        _f("update_time", TS),
    ]
)

NOTIFICATIONS = pa.schema(
    [
        # `ntf_...`, derived from the cause: a check never makes the same notification twice
        _f("id", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("agent_id", pa.string(), False),
        _f("instance_id", pa.string()),
        _f("user_id", pa.string(), False),
        # follow_up | inactivity | due_task
        _f("check_type", pa.string()),
        _f("generated_message", pa.string()),
        # pending | consumed
        _f("status", pa.string()),
        _f("due_time", TS),
        _f("create_time", TS),
        _f("consume_time", TS),
        _f("source_id", pa.string()),
        _f("metadata", pa.string()),
    ]
)
# The change feed (store/changes.py). One row per commit of changes of one project: the changes
# `first_sequence`..`last_sequence` as a JSON list. Also one `head` row per project (its last
# sequence, first_sequence 0) and one `anchor` row (project "") that every commit updates.
MEMORY_CHANGES = pa.schema(
    [
        _f("pk", pa.string(), False),
        _f("project_id", pa.string(), False),
        _f("first_sequence", pa.int64(), False),
        _f("last_sequence", pa.int64(), False),
        # the compare-and-set: a head row is overwritten only while it still holds this value
        _f("expect", pa.int64(), False),
        _f("changes", pa.string()),
        _f("time", TS),
    ]
)
CHANGE_ANCHOR_PK = "~anchor"


def change_anchor() -> pa.Table:
    """The change feed table's first rows: its anchor alone."""
    row = {"pk": CHANGE_ANCHOR_PK, "project_id": "", "first_sequence": 0, "last_sequence": 0}
    return pa.Table.from_pylist(
        [{**row, "expect": 0, "changes": None, "time": None}], MEMORY_CHANGES
    )
