"""PNG encoding of the stimuli: RGB, 8 bits, every row filtered with "Up", ISA-L deflate level 1.

Why not Pillow's encoder: for RGB it tries all five PNG row filters on every row and keeps
the one with the smallest sum of absolute values (libpng's heuristic), and compresses with
zlib. On the demo's 224 px stimuli that took 3.6-5.7 ms per image, and the build's
encoding runs beside the engine on the same two cores. Here one fixed filter is a numpy
subtraction (0.03 ms) and Intel's ISA-L deflate (the ``isal`` wheel) at level 1 takes about
0.7 ms and gives smaller files, 83 KiB mean against Pillow's 87 KiB at level 1
Huffman-only (zlib level 1 RLE after the same filter: 1.7 ms, 87 KiB; libdeflate level 1:
1.8 ms, 81 KiB; measured on this 2-core machine, 2026-11-27). "Up" suits both kinds of
stimulus: heatmap overlays are smooth down the columns, and the guided images'
mid-grey background differences to zero.

The bytes are a deterministic function of the pixels for a given ISA-L build, so a
re-rendered stimulus has the same sha256 on the same machine.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP = 2  # PNG filter type: each byte minus the byte above it (the row above row 0 is zeros)
LEVEL = 1


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_rgb(pixels: np.ndarray) -> bytes:
    """The PNG file of ``(H, W, 3)`` uint8 pixels (8-bit truecolour, no interlace)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"need (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    h, w, _ = pixels.shape
    rows = pixels.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps modulo 256, as PNG wants
    data = isal_zlib.compress(filtered.data, LEVEL)  # a zlib stream, as IDAT holds
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, adaptive, no interlace
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
