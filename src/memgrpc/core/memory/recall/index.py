"""``UserIndex``: one user's messages and memories, held in memory and searched exhaustively.

Items sit in compact slots ``0..n-1`` of numpy arrays (removal moves the last item into
the hole), with an incremental BM25 index, per-session ordered membership (for the
previous/next turn) and per-speaker numbers. Adding, updating or removing an item costs
O(its terms + log(session size)); a search scores every item with ``rank.score``.
"""

from __future__ import annotations

import bisect
import re
import sys
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count

import numpy as np
import numpy.typing as npt

from memgrpc.core.memory.recall import text as textmod
from memgrpc.core.memory.recall.bm25 import TermIndex
from memgrpc.core.memory.recall.rank import Corpus, QuerySignals, RankParams, score

#: Order of an item within its session: (position, timestamp, insertion number).
OrderKey = tuple[int, float, int]
#: A search filter: the ids allowed, or a predicate on an id.
IdFilter = Collection[str] | Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What the index keeps of an item besides its vector and term counts."""

    id: str
    text: str
    speaker: str
    session: str
    position: int
    time: datetime | None


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class UserIndex:
    """In-memory recall index of one user: ``add``/``update``/``remove`` items, ``search``.

    Not thread-safe: the owner serialises writes against searches (one lock per user).
    """

    def __init__(self, dim: int = 384, params: RankParams | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.params = params if params is not None else RankParams()
        self._n = 0
        self._cap = 0
        self._seq = count()
        # per slot, numpy
        self._vec = np.zeros((0, dim), dtype=np.float32)
        self._dl = np.zeros(0)
        self._prev = np.zeros(0, dtype=np.intp)
        self._next = np.zeros(0, dtype=np.intp)
        self._wnorm = np.zeros(0)
        self._sess = np.zeros(0, dtype=np.intp)
        self._spk = np.zeros(0, dtype=np.int32)
        self._question = np.zeros(0, dtype=np.bool_)
        self._derived = np.zeros(0, dtype=np.bool_)
        self._timex = np.zeros(0, dtype=np.bool_)
        self._day = np.zeros(0)
        self._tie = np.zeros(0, dtype=np.int64)
        self._dup = np.zeros(0, dtype=np.int64)
        # per slot, Python
        self._info: list[ItemInfo] = []
        # each item's distinct terms (interned: shared with the postings' keys), to unindex it
        self._item_terms: list[tuple[str, ...]] = []
        self._keys: list[OrderKey] = []
        self._slot_of: dict[str, int] = {}
        self._terms = TermIndex()
        # sessions (numbered; an item without a session gets a number of its own)
        self._session_no: dict[str, int] = {}
        self._session_name: list[str] = []
        self._session_len = np.zeros(0)
        self._session_size: list[int] = []
        # each session's slots in turn order (by ``_keys``): no key -> slot map to keep per item
        self._session_items: list[list[int]] = []
        self._session_next_pos: list[int] = []
        self._free_sessions: list[int] = []
        self._live_sessions = 0
        # speakers
        self._speaker_no: dict[str, int] = {}
        self._speaker_refs: dict[int, int] = {}
        self._speaker_patterns: dict[int, list[re.Pattern[str]]] = {}

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot_of

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._slot_of))

    def get(self, item_id: str) -> ItemInfo | None:
        """The stored fields of ``item_id`` (position resolved), or ``None``."""
        slot = self._slot_of.get(item_id)
        return None if slot is None else self._info[slot]

    # ------------------------------------------------------------------ writing

    def add(
        self,
        item_id: str,
        text: str,
        vector: npt.ArrayLike,
        *,
        speaker: str = "",
        session: str = "",
        position: int | None = None,
        time: datetime | None = None,
        derived: bool = False,
    ) -> None:
        """Index an item; an existing ``item_id`` is replaced (upsert).

        ``derived``: made from other items (an extracted fact, a summary): it stands alone (no
        session, no neighbours) and is not promoted above turns (rank step 7), since the turns
        it came from compete already.

        ``vector`` is the embedding of ``text.embed_text(text, speaker)`` (renormalised
        here). ``position`` orders turns within ``session`` (default: after the last one);
        ties fall back to ``time``, then to insertion order. Items without a session are
        plain memories: no neighbours, a session of their own.
        """
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"vector has {vec.shape[0]} dimensions, expected {self.dim}")
        if not np.all(np.isfinite(vec)):
            raise ValueError("vector has non-finite values")
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec = vec / norm
        if item_id in self._slot_of:
            self.remove(item_id)
        when = _utc(time)
        speaker = speaker.strip()
        session = "" if derived else session.strip()

        slot = self._n
        self._ensure_capacity(slot + 1)
        sid = self._session_for(session)
        if position is None:
            position = self._session_next_pos[sid]
        self._session_next_pos[sid] = max(self._session_next_pos[sid], position + 1)
        key: OrderKey = (position, when.timestamp() if when else 0.0, next(self._seq))
        counts = textmod.term_counts(textmod.index_text(text, speaker, when))

        self._n += 1
        self._info.append(ItemInfo(item_id, text, speaker, session, position, when))
        self._item_terms.append(tuple(map(sys.intern, counts)))
        self._keys.append(key)
        self._slot_of[item_id] = slot
        self._vec[slot] = vec
        self._dl[slot] = float(sum(counts.values()))
        self._sess[slot] = sid
        self._spk[slot] = self._speaker_ref(speaker)
        self._question[slot] = textmod.is_question(text)
        self._derived[slot] = derived
        self._timex[slot] = textmod.has_time_expression(text)
        self._day[slot] = float(when.date().toordinal()) if when else np.nan
        self._tie[slot] = zlib.crc32(item_id.encode("utf-8"))
        # 0 = never merged (see search); a real hash of 0 merely makes that turn unmerged too
        self._dup[slot] = (
            hash((speaker, " ".join(text.lower().split()).strip(" .!?"))) if speaker else 0
        )
        self._terms.add(slot, counts)
        self._session_len[sid] += self._dl[slot]
        self._session_size[sid] += 1

        items = self._session_items[sid]
        at = bisect.bisect_left(items, key, key=self._keys.__getitem__)
        before = items[at - 1] if at > 0 else -1
        after = items[at] if at < len(items) else -1
        items.insert(at, slot)
        self._prev[slot], self._next[slot] = before, after
        if before >= 0:
            self._next[before] = slot
        if after >= 0:
            self._prev[after] = slot
        for s in (before, slot, after):
            self._refresh_window(s)

    def update(
        self,
        item_id: str,
        *,
        text: str | None = None,
        vector: npt.ArrayLike | None = None,
        speaker: str | None = None,
        session: str | None = None,
        position: int | None = None,
        time: datetime | None = None,
    ) -> None:
        """Change some fields of an existing item (a new ``text`` needs its new ``vector``)."""
        slot = self._slot_of.get(item_id)
        if slot is None:
            raise KeyError(item_id)
        if text is not None and vector is None and text != self._info[slot].text:
            raise ValueError("a changed text needs the vector of its new embedding text")
        old = self._info[slot]
        new_speaker = old.speaker if speaker is None else speaker
        if vector is None and new_speaker.strip() != old.speaker:
            raise ValueError("a changed speaker changes the embedding text: pass its vector")
        vec = self._vec[slot].copy() if vector is None else vector
        self.add(
            item_id,
            old.text if text is None else text,
            vec,
            speaker=new_speaker,
            session=old.session if session is None else session,
            position=old.position if position is None else position,
            time=old.time if time is None else time,
        )

    def remove(self, item_id: str) -> bool:
        """Drop ``item_id``; ``False`` if it was not there."""
        slot = self._slot_of.pop(item_id, None)
        if slot is None:
            return False
        sid = int(self._sess[slot])
        key = self._keys[slot]
        before, after = int(self._prev[slot]), int(self._next[slot])
        if before >= 0:
            self._next[before] = after
        if after >= 0:
            self._prev[after] = before
        items = self._session_items[sid]
        del items[bisect.bisect_left(items, key, key=self._keys.__getitem__)]
        self._session_len[sid] -= self._dl[slot]
        self._session_size[sid] -= 1
        if self._session_size[sid] == 0:
            self._release_session(sid)
        self._speaker_unref(int(self._spk[slot]))
        self._terms.remove(slot, self._item_terms[slot])

        last = self._n - 1
        if slot != last:
            self._move(last, slot)
            before = slot if before == last else before
            after = slot if after == last else after
        self._info.pop()
        self._item_terms.pop()
        self._keys.pop()
        self._n -= 1
        for s in (before, after):
            self._refresh_window(s)
        return True

    # ------------------------------------------------------------------ searching

    def search(
        self,
        query: str,
        query_vector: npt.ArrayLike,
        k: int = 10,
        *,
        filter: IdFilter | None = None,
        query_time: datetime | None = None,
        params: RankParams | None = None,
        dedup: bool = True,
    ) -> list[tuple[str, float]]:
        """The ``k`` best items for ``query`` as ``(id, score)``, score in [0, 1], best first.

        ``query_vector`` embeds the raw query with the corpus's model. ``filter`` limits
        what is returned (ids allowed, or a predicate on the id); every item still counts
        as context. ``query_time`` resolves "yesterday"/"last week" in the query.
        ``dedup`` returns only the best of turns with the same speaker and text (case,
        spacing and end punctuation aside), so a repeated "Thanks!" does not crowd out
        other results. Items without a speaker (memories stored as such) are never merged:
        the same text stored three times, say with different tags, is three results.
        Equal scores are ordered by a hash of the id: neutral, and the same on every call.
        """
        n = self._n
        if n == 0 or k <= 0:
            return []
        qvec = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if qvec.shape[0] != self.dim:
            raise ValueError(f"query vector has {qvec.shape[0]} dimensions, expected {self.dim}")
        scores = score(
            self._corpus(), self._signals(query, qvec, query_time), params or self.params
        )

        allowed = np.ones(n, dtype=np.bool_)
        if filter is not None:
            if callable(filter):
                allowed = np.fromiter((bool(filter(i.id)) for i in self._info), np.bool_, n)
            else:
                wanted = filter if isinstance(filter, set | frozenset | dict) else set(filter)
                allowed = np.fromiter((i.id in wanted for i in self._info), np.bool_, n)
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            return []
        cand_scores = scores[candidates]
        want = max(4 * k, k + 32) if dedup else k
        while True:
            top, top_scores = candidates, cand_scores
            if candidates.size > want:
                kth = np.partition(cand_scores, candidates.size - want)[candidates.size - want]
                keep = cand_scores >= kth
                top, top_scores = candidates[keep], cand_scores[keep]
            order = np.lexsort((top, self._tie[top], -top_scores))
            results: list[tuple[str, float]] = []
            seen: set[int] = set()
            for i in order:
                slot = int(top[i])
                if dedup and (key := int(self._dup[slot])):
                    if key in seen:
                        continue
                    seen.add(key)
                results.append((self._info[slot].id, float(top_scores[i])))
                if len(results) == k:
                    return results
            if top.size == candidates.size:
                return results
            want *= 4

    # ------------------------------------------------------------------ internals

    def _corpus(self) -> Corpus:
        n = self._n
        prev = self._prev[:n]
        nxt = self._next[:n]
        return Corpus(
            vectors=self._vec[:n],
            doc_len=self._dl[:n],
            prev=np.where(prev < 0, n, prev),
            next=np.where(nxt < 0, n, nxt),
            window_norm=self._wnorm[:n],
            session=self._sess[:n],
            session_len=self._session_len[: len(self._session_name)],
            n_sessions=self._live_sessions,
            speaker=self._spk[:n],
            question=self._question[:n],
            derived=self._derived[:n],
            timex=self._timex[:n],
            day=self._day[:n],
        )

    def _signals(
        self, query: str, qvec: npt.NDArray[np.float32], query_time: datetime | None
    ) -> QuerySignals:
        n = self._n
        rows: list[npt.NDArray[np.float64]] = []
        dfs: list[float] = []
        for term in sorted(set(textmod.tokenize(query))):
            post = self._terms.postings(term)
            if post is None:
                continue
            row = np.zeros(n + 1)
            row[post[0]] = post[1]
            rows.append(row)
            dfs.append(float(post[0].shape[0]))
        tf = np.stack(rows) if rows else np.zeros((0, n + 1))
        named = sorted(
            number
            for number, patterns in self._speaker_patterns.items()
            if any(p.search(query) for p in patterns)
        )
        return QuerySignals(
            term_tf=tf,
            term_df=np.asarray(dfs, dtype=np.float64),
            vector=qvec,
            speakers=named,
            when=textmod.is_when_query(query),
            day_ranges=textmod.query_day_ranges(query, _utc(query_time)),
        )

    def reserve(self, n: int) -> None:
        """Room for ``n`` items in all (a load of known size allocates once, exactly)."""
        self._ensure_capacity(n, exact=True)

    def _ensure_capacity(self, needed: int, *, exact: bool = False) -> None:
        if needed <= self._cap:
            return
        # a quarter more, not double: the vectors are most of a cached user's bytes, and
        # growing by a quarter leaves ~12% unused on average instead of ~50%
        cap = needed if exact else max(64, self._cap + self._cap // 4, needed)

        def grow(a: npt.NDArray[np.generic], fill: object = 0) -> npt.NDArray[np.generic]:
            out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out

        self._vec = grow(self._vec).astype(np.float32, copy=False)
        self._dl = grow(self._dl).astype(np.float64, copy=False)
        self._prev = grow(self._prev, -1).astype(np.intp, copy=False)
        self._next = grow(self._next, -1).astype(np.intp, copy=False)
        self._wnorm = grow(self._wnorm).astype(np.float64, copy=False)
        self._sess = grow(self._sess).astype(np.intp, copy=False)
        self._spk = grow(self._spk, -1).astype(np.int32, copy=False)
        self._question = grow(self._question, False).astype(np.bool_, copy=False)
        self._derived = grow(self._derived, False).astype(np.bool_, copy=False)
        self._timex = grow(self._timex, False).astype(np.bool_, copy=False)
        self._day = grow(self._day, np.nan).astype(np.float64, copy=False)
        self._tie = grow(self._tie).astype(np.int64, copy=False)
        self._dup = grow(self._dup).astype(np.int64, copy=False)
        self._cap = cap

    def _move(self, src: int, dst: int) -> None:
        """Renumber the item in slot ``src`` to the free slot ``dst``."""
        for arr in (
            self._vec,
            self._dl,
            self._prev,
            self._next,
            self._wnorm,
            self._sess,
            self._spk,
            self._question,
            self._derived,
            self._timex,
            self._day,
            self._tie,
            self._dup,
        ):
            arr[dst] = arr[src]
        self._terms.move(src, dst, self._item_terms[src])
        self._info[dst] = self._info[src]
        self._item_terms[dst] = self._item_terms[src]
        self._keys[dst] = self._keys[src]
        self._slot_of[self._info[dst].id] = dst
        items = self._session_items[int(self._sess[dst])]
        items[bisect.bisect_left(items, self._keys[src], key=self._keys.__getitem__)] = dst
        before, after = int(self._prev[dst]), int(self._next[dst])
        if before >= 0:
            self._next[before] = dst
        if after >= 0:
            self._prev[after] = dst
        self._prev[src] = self._next[src] = -1

    def _refresh_window(self, slot: int) -> None:
        if slot < 0:
            return
        total = self._vec[slot].astype(np.float64)
        for other in (int(self._prev[slot]), int(self._next[slot])):
            if other >= 0:
                total = total + self._vec[other]
        self._wnorm[slot] = float(np.linalg.norm(total))

    def _session_for(self, name: str) -> int:
        if name and name in self._session_no:
            return self._session_no[name]
        if self._free_sessions:
            sid = self._free_sessions.pop()
            self._session_name[sid] = name
            self._session_len[sid] = 0.0
            self._session_size[sid] = 0
            self._session_items[sid] = []
            self._session_next_pos[sid] = 0
        else:
            sid = len(self._session_name)
            self._session_name.append(name)
            if sid >= self._session_len.shape[0]:
                grown = np.zeros(max(64, 2 * self._session_len.shape[0]))
                grown[: self._session_len.shape[0]] = self._session_len
                self._session_len = grown
            self._session_size.append(0)
            self._session_items.append([])
            self._session_next_pos.append(0)
        if name:
            self._session_no[name] = sid
        self._live_sessions += 1
        return sid

    def _release_session(self, sid: int) -> None:
        name = self._session_name[sid]
        if name:
            del self._session_no[name]
        self._session_name[sid] = ""
        self._session_len[sid] = 0.0
        self._free_sessions.append(sid)
        self._live_sessions -= 1

    def _speaker_ref(self, name: str) -> int:
        if not name:
            return -1
        number = self._speaker_no.get(name)
        if number is None:
            number = len(self._speaker_no)
            while number in self._speaker_refs:
                number += 1
            self._speaker_no[name] = number
            self._speaker_refs[number] = 0
            forms = {name, name.split()[0]}
            patterns = [p for p in map(textmod.name_pattern, sorted(forms)) if p is not None]
            if patterns:
                self._speaker_patterns[number] = patterns
        self._speaker_refs[number] += 1
        return number

    def _speaker_unref(self, number: int) -> None:
        if number < 0:
            return
        self._speaker_refs[number] -= 1
        if self._speaker_refs[number] == 0:
            del self._speaker_refs[number]
            self._speaker_patterns.pop(number, None)
            name = next(k for k, v in self._speaker_no.items() if v == number)
            del self._speaker_no[name]
