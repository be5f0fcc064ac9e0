"""Finds copies of a secret in raw bytes: plain, base64 (standard and urlsafe, any
alignment), or inside a Fernet token that a given key still decrypts."""
import base64
import errno
import os
import re

from cryptography.fernet import Fernet, InvalidToken

FERNET_RE = re.compile(rb"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}")


def encodings(secret: bytes) -> list[bytes]:
    out = [secret]
    for shift in range(3):
        chunk = secret[shift:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        if len(chunk) >= 12:
            out.append(base64.b64encode(chunk))
            out.append(base64.urlsafe_b64encode(chunk))
    return out


def find(blob: bytes, secret: bytes, keys: list[bytes]) -> list[str]:
    hits = [f"encoding {i}" for i, e in enumerate(encodings(secret)) if e in blob]
    for m in FERNET_RE.finditer(blob):
        for candidate in fernet_candidates(m.group(0)):
            for k in keys:
                try:
                    if secret in Fernet(k).decrypt(candidate):
                        hits.append("fernet token")
                except (InvalidToken, ValueError):
                    pass
    return hits


def fernet_candidates(run: bytes) -> list[bytes]:
    """The run itself and each prefix as long as a Fernet token can be: a database record
    stores columns back to back, so a token may be followed by more base64-alphabet text
    (a date, an id) that the greedy pattern swallows."""
    out = [run]
    k = 1
    while True:
        # version 1 + timestamp 8 + iv 16 + ciphertext 16k + hmac 32 bytes, base64 with padding
        n = 4 * ((57 + 16 * k + 2) // 3)
        if n > len(run) or n > 1 << 16:
            return out
        if n < len(run):
            out.append(run[:n])
        k += 1


def scan_files(paths: list[str], secret: bytes, keys: list[bytes]) -> dict:
    found = {}
    for p in paths:
        if os.path.isfile(p):
            try:
                data = open(p, "rb").read()
            except OSError as e:
                # A box's user namespace bound on <box>/userns (nsfs) has no bytes to read.
                if e.errno == errno.EINVAL and os.path.ismount(p):
                    continue
                raise
            hits = find(data, secret, keys)
            if hits:
                found[p] = hits
    return found


def data_dir_files(data_dir: str) -> list[str]:
    return [os.path.join(data_dir, n) for n in os.listdir(data_dir) if n.startswith("devbox.sqlite")]
