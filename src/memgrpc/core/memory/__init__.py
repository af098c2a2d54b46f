"""Memories: the model, its store rows, the service (CRUD, versions, list, search, batch),
import/export, and recall (the per-user in-memory index and its ranking)."""
