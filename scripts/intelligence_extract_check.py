"""Which dev scenarios' extraction-level expectations the rules extractor alone satisfies.

Runs RulesExtractor over each scenario's messages (each session separately, as processing
would) and checks, at the Fact level, the expectations extraction decides: `profile` /
`profile_contains` (a slot fact with that value; the latest one wins), `profile_absent`,
`memory_contains`, `type`, `no_extracted_memories`, `extracted_cite_source_message`, and
for `max_memories_matching` only its lower bound (dedup is reconciliation's). Expectations
about versions and conflicts are reconciliation's and are listed, not checked.

    .venv/bin/python scripts/intelligence_extract_check.py [path/to/intelligence_dev.json]
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract import RulesExtractor
from memgrpc.core.intelligence.facts import Fact

CHECKED = {
    "profile", "profile_contains", "profile_absent", "memory_contains", "type",
    "no_extracted_memories", "extracted_cite_source_message", "max_memories_matching",
}  # fmt: skip


def sessions_of(sc: dict[str, Any]) -> list[list[Message]]:
    raw = sc.get("sessions") or [sc["messages"]]
    out = []
    for si, sess in enumerate(raw):
        msgs = []
        for mi, m in enumerate(sess):
            role, content = ("user", m) if isinstance(m, str) else (m["role"], m["content"])
            msgs.append(Message(id=f"s{si}m{mi}", role=role, content=content))
        out.append(msgs)
    return out


def check(expect: dict[str, Any], facts: list[Fact]) -> list[str]:
    fails: list[str] = []
    profile: dict[str, str] = {}
    for f in facts:
        if f.slot and f.value and not f.negated:
            profile[f.slot] = f.value
    texts = [f.content.lower() for f in facts]
    for slot, v in expect.get("profile", {}).items():
        if profile.get(slot, "").strip().lower() != v.lower():
            fails.append(f"profile {slot}={profile.get(slot)!r}, want {v!r}")
    for slot, v in expect.get("profile_contains", {}).items():
        if v.lower() not in profile.get(slot, "").lower():
            fails.append(f"profile {slot}={profile.get(slot)!r}, want containing {v!r}")
    for slot in expect.get("profile_absent", []):
        if profile.get(slot):
            fails.append(f"profile {slot}={profile[slot]!r}, want absent")
    for w in expect.get("memory_contains", []):
        if not any(w.lower() in t for t in texts):
            fails.append(f"no fact contains {w!r}")
    words = expect.get("memory_contains", [])
    first = next((f for f in facts if words and words[0].lower() in f.content.lower()), None)
    if "type" in expect and (first is None or first.type != expect["type"].lower()):
        fails.append(f"type {first.type if first else None!r}, want {expect['type'].lower()!r}")
    if expect.get("extracted_cite_source_message") and (
        first is None or not first.source_message_ids
    ):
        fails.append("the fact cites no message")
    if expect.get("no_extracted_memories") and facts:
        fails.append(f"{len(facts)} facts, want none")
    for w in expect.get("max_memories_matching", {}):
        if not any(w.lower() in t for t in texts):
            fails.append(f"no fact contains {w!r}")
    return fails


async def main(path: str) -> None:
    with open(path) as f:  # noqa: ASYNC230 (a script, read once before anything runs)
        scenarios = json.load(f)["scenarios"]
    extractor = RulesExtractor()
    passed = 0
    for sc in scenarios:
        facts: list[Fact] = []
        for msgs in sessions_of(sc):
            facts += await extractor.extract(msgs, [])
        fails = check(sc["expect"], facts)
        rest = sorted(set(sc["expect"]) - CHECKED)
        passed += not fails
        note = f"  (not checked here: {', '.join(rest)})" if rest else ""
        print(f"{'ok  ' if not fails else 'FAIL'} {sc['id']}{note}")
        for fail in fails:
            print(f"       {fail}")
        if "-v" in sys.argv:
            for fact in facts:
                print(f"       . {fact.slot or fact.type}={fact.value!r} {fact.content}")
    print(f"{passed}/{len(scenarios)} scenarios: extraction-level expectations hold")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    asyncio.run(main(args[0] if args else "/work/shared/bench/intelligence_dev.json"))
