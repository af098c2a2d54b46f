"""The shared kernel every domain builds on: domain errors, ids, per-key locks, request-id
idempotency, keyset paging, input validation and the cache of rows this process wrote."""
