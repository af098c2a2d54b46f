"""The one escaping function and the filter builder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memgrpc.store.filters import FilterValueError, Where, literal


def test_literal_escapes_quotes() -> None:
    assert literal("it's") == "'it''s'"
    assert literal("x' OR '1'='1") == "'x'' OR ''1''=''1'"
    assert literal(3) == "3" and literal(True) == "TRUE" and literal(0.5) == "0.5"
    assert (
        literal(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        == "TIMESTAMP '2024-01-02 03:04:05.000000'"
    )


@pytest.mark.parametrize("bad", ["a\x00b", float("nan"), float("inf"), object()])
def test_literal_rejects_unsafe(bad: object) -> None:
    with pytest.raises(FilterValueError):
        literal(bad)  # type: ignore[arg-type]


def test_where_builder() -> None:
    w = Where().eq("project_id", "p'1").is_in("type", ["fact", "task"]).has_all("tags", ["a'b"])
    assert (
        str(w)
        == "project_id = 'p''1' AND type IN ('fact', 'task') AND array_has_all(tags, ['a''b'])"
    )
    assert str(Where().is_in("id", [])) == "FALSE"
    assert str(Where().is_null("doc")) == "doc IS NULL"
    assert str(Where().eq("user_id", "u").not_true("archived").is_null("doc")) == (
        "user_id = 'u' AND (archived IS NULL OR archived = FALSE) AND doc IS NULL"
    )
    with pytest.raises(FilterValueError):
        Where().eq("col; DROP", "x")
    with pytest.raises(FilterValueError):
        Where().cmp("a", "= 1 OR", 1)
