"""Users come into being implicitly on their first write."""

from __future__ import annotations

from datetime import UTC, datetime

from memgrpc.store.db import Store


class UserRegistry:
    def __init__(self, store: Store) -> None:
        self._writer = store.writer("users")
        self._known: set[tuple[str, str]] = set()

    async def ensure(self, project_id: str, user_ids: set[str]) -> None:
        new = {u for u in user_ids if (project_id, u) not in self._known}
        if not new:
            return
        now = datetime.now(UTC)
        await self._writer.insert_absent(
            [
                {
                    "pk": f"{project_id}\x1f{u}",
                    "project_id": project_id,
                    "id": u,
                    "metadata": "{}",
                    "create_time": now,
                    "last_active_time": now,
                }
                for u in sorted(new)
            ]
        )
        self._known.update((project_id, u) for u in new)
