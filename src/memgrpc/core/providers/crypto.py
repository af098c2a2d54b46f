"""The master key provider keys are sealed with (AES-256-GCM, `cryptography`), and the seal.

The master key comes from MEMGRPC_MASTER_KEY or, when that is unset, from `master.key` next to
the data dir's admin.key, generated on first start. The file is created with mode 0600 by the
open call itself (never world-readable, not even for a moment) and holds the key as base64.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"


def load_or_create(path: Path) -> bytes:
    """The key in `path`; a new random one written there (0600) when the file does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read(path)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(base64.b64encode(key).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return key


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not a base64 {KEY_BYTES}-byte master key")
    return key


class Sealer:
    """Encrypts secrets bound to where they belong (`aad`: a ciphertext moved to another row
    or project does not open)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, aad: str) -> tuple[bytes, bytes]:
        """(nonce, ciphertext); a fresh random nonce each time."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext.encode(), aad.encode())

    def open(self, nonce: bytes, ciphertext: bytes, aad: str) -> str:
        return self._aead.decrypt(nonce, ciphertext, aad.encode()).decode()
