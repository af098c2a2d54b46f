"""The clarifying question a merge conflict asks, and the checks of the answers to it
(RecallrAI's errors, each its own ErrorInfo reason)."""

from __future__ import annotations

from collections.abc import Sequence

from memgrpc.core.intelligence.conflicts.rows import Answer, ClarifyingQuestion, dumps
from memgrpc.core.kernel.errors import FieldViolation, InvalidArgument, Violations
from memgrpc.core.memory.model import Memory

BOTH = "Both: they were true at different times"
MAX_MESSAGE_CHARS = 2000


def questions_for(new: Memory, old: Sequence[Memory]) -> list[ClarifyingQuestion]:
    """One question: which is true now, the new fact, an old one, or both at different times."""
    earlier = "; ".join(f"'{m.content}'" for m in old)
    options, choices = [new.content], ["new"]
    for m in old:
        if m.content not in options and m.content != BOTH:
            options.append(m.content)
            choices.append(f"old:{m.id}")
    options.append(BOTH)
    choices.append("both")
    question = f"Earlier: {earlier}. Now: '{new.content}'. Which is true now?"
    return [ClarifyingQuestion(question, options, choices)]


def _choice(q: ClarifyingQuestion, answer: str) -> str:
    i = q.options.index(answer)
    if len(q.choices) == len(q.options):
        return q.choices[i]
    return "new" if i == 0 else "both" if i == len(q.options) - 1 else "old:"


def check_answers(v: Violations, answers: Sequence[Answer]) -> None:
    """The shape of the answers, before any conflict is read."""
    seen: dict[str, int] = {}
    for i, a in enumerate(answers):
        if not a.question:
            v.add(f"answers[{i}].question", "is required")
        elif a.question in seen:
            v.add(
                f"answers[{i}].question",
                f"answers the same question as answers[{seen[a.question]}]",
            )
        else:
            seen[a.question] = i
        if not a.answer:
            v.add(f"answers[{i}].answer", "is required")
        if len(a.message) > MAX_MESSAGE_CHARS:
            v.add(f"answers[{i}].message", f"must be at most {MAX_MESSAGE_CHARS} characters")


def match(questions: Sequence[ClarifyingQuestion], answers: Sequence[Answer]) -> str:
    """The choice the answers make; RecallrAI's errors when they do not fit the questions."""
    by_q = {q.question: q for q in questions}
    asked = dumps([q.question for q in questions])
    unknown = [(i, a.question) for i, a in enumerate(answers) if a.question not in by_q]
    if unknown:
        raise InvalidArgument(
            f"answers name {len(unknown)} question(s) this conflict does not ask",
            reason="CONFLICT_INVALID_QUESTIONS",
            metadata={"invalid_questions": dumps([q for _, q in unknown]), "questions": asked},
            violations=[
                FieldViolation(f"answers[{i}].question", "is not a question of this conflict")
                for i, _ in unknown
            ],
        )
    answered = {a.question for a in answers}
    missing = [q.question for q in questions if q.question not in answered]
    if missing:
        raise InvalidArgument(
            f"{len(missing)} question(s) have no answer",
            reason="CONFLICT_MISSING_ANSWERS",
            metadata={"missing_questions": dumps(missing)},
            violations=[FieldViolation("answers", f"no answer to {q!r}") for q in missing],
        )
    bad = [(i, a, by_q[a.question]) for i, a in enumerate(answers)]
    bad = [(i, a, q) for i, a, q in bad if a.answer not in q.options]
    if bad:
        _, _, first = bad[0]
        raise InvalidArgument(
            f"answer is not one of the options of {first.question!r}",
            reason="CONFLICT_INVALID_ANSWER",
            metadata={"question": first.question, "valid_options": dumps(first.options)},
            violations=[
                FieldViolation(
                    f"answers[{i}].answer",
                    "must be one of: " + "; ".join(repr(o) for o in q.options),
                )
                for i, _, q in bad
            ],
        )
    by_answer = {a.question: a.answer for a in answers}
    return _choice(questions[0], by_answer[questions[0].question])
