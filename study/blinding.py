"""Blind stimuli: nothing the browser receives about an image may predict the answer.

What the browser could read about a stimulus, and what it gets instead:

- its URL: ``/s/<slug>/img/<token>``, where the token is signed for the participant and
  names only a trial position and a slot of that participant's plan (:func:`image_token`),
  never the stimulus: a stranger cannot make one, and it says nothing of the model, method
  or category (row ids, assigned in file-name order, did). Nor does it link a trial to
  another participant's (a fixed id per stimulus would: its order within an item is a
  property of the item that a classifier learns across participants);
- its headers: ``image/png`` with a fixed cache rule; no file name, no ETag and no
  Last-Modified (a path-derived ETag or the file's mtime orders the files as the build
  wrote them);
- its size: every stimulus is padded to the size of its *group*, the stimuli that are ever
  shown beside one another, rounded up to a multiple of :data:`BUCKET` bytes
  (:func:`served_sizes`). The padding is one ancillary PNG chunk (:func:`pad_png`), which
  every decoder skips, so the pixels are unchanged. Within a trust trial both images then
  have the same length, whichever model made each. The 2x renderings (for screens with
  two or more device pixels per CSS pixel) are padded the same way, per group, from
  their own sizes (``served_size_2x``): at each scale the stimuli shown together have one
  served size, so neither the 1x nor the 2x byte count tells which is which.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from itsdangerous import URLSafeSerializer

from study.tokens import signed_payload

BUCKET = 4096
# An ancillary (lower-case first letter), private (second), safe-to-copy (fourth) chunk type.
PAD_CHUNK = b"caPd"
CHUNK_OVERHEAD = 12  # length, type and CRC
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
SALT = "camstudy.image"


def pad_png(data: bytes, size: int) -> bytes:
    """``data`` (a PNG) grown to exactly ``size`` bytes by a padding chunk before IEND."""
    if not data.endswith(_IEND):
        raise ValueError("not a PNG that ends with its IEND chunk")
    n = size - len(data) - CHUNK_OVERHEAD
    if n < 0:
        raise ValueError(f"cannot pad {len(data)} bytes to {size}")
    body = bytes(n)
    chunk = struct.pack(">I", n) + PAD_CHUNK + body + struct.pack(">I", zlib.crc32(PAD_CHUNK + body))
    return data[: -len(_IEND)] + chunk + _IEND


def bucket(n: int) -> int:
    """The served size of a group whose largest file has ``n`` bytes (room for the chunk)."""
    return -(-(n + CHUNK_OVERHEAD) // BUCKET) * BUCKET


def served_sizes(sizes: dict[str, int], shown_together: Iterable[Iterable[str]]) -> dict[str, int]:
    """The padded size of every stimulus in ``sizes``: the bucket of the largest file among
    those it can be shown with (``shown_together``: the stimulus ids of each item), taken
    over whole connected groups, so every image of a trial has one size.

    One call per scale: ``sizes`` holds the 1x files' sizes, or the 2x files' (ids absent
    from ``sizes`` are skipped in the groups)."""
    parent = {s: s for s in sizes}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for group in shown_together:
        ids = [s for s in group if s in parent]
        for other in ids[1:]:
            a, b = root(ids[0]), root(other)
            if a != b:
                parent[b] = a
    largest: dict[str, int] = {}
    for s, n in sizes.items():
        r = root(s)
        largest[r] = max(largest.get(r, 0), n)
    return {s: bucket(largest[root(s)]) for s in sizes}


PRACTICE = -1  # the position of the practice trial's images


def image_token(secret: str, participant_id: int, position: int, slot: int) -> str:
    """The URL token of the ``slot``-th image of trial ``position`` (:data:`PRACTICE` for
    the practice trial) of one participant. It names no stimulus: the server finds it in the
    participant's plan. The same on every request, so the browser's cache and a resumed
    plan keep working."""
    return URLSafeSerializer(secret, salt=SALT).dumps([participant_id, position, slot])


def read_image_token(secret: str, token: str) -> tuple[int, int, int] | None:
    """``(participant id, position, slot)`` of a genuine token, else None."""
    data = signed_payload(secret, SALT, token, limit=300)
    if (
        not isinstance(data, list)
        or len(data) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in data)
    ):
        return None
    return data[0], data[1], data[2]
