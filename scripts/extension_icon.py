"""Draw the VS Code extension's icon: ``python scripts/extension_icon.py`` writes extension/images/icon.png.

256x256 RGBA, no dependency beyond the standard library (zlib): a blue rounded
square with three bars, a pool of credits. The marketplace wants a PNG of at
least 128x128 (py/tests/test_extension.py checks it).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIZE = 256
BLUE = (31, 79, 216, 255)
WHITE = (255, 255, 255, 255)
PALE = (159, 192, 255, 255)
CLEAR = (0, 0, 0, 0)
#: (left, top, right, bottom, corner radius, colour), drawn in order.
SHAPES = [
    (0, 0, 255, 255, 48, BLUE),
    (56, 60, 200, 92, 16, WHITE),
    (56, 112, 200, 144, 16, WHITE),
    (56, 164, 150, 196, 16, PALE),
]


def _inside(x: int, y: int, left: int, top: int, right: int, bottom: int, r: int) -> bool:
    if not (left <= x <= right and top <= y <= bottom):
        return False
    cx = min(max(x, left + r), right - r)
    cy = min(max(y, top + r), bottom - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def pixels() -> bytes:
    rows = bytearray()
    for y in range(SIZE):
        rows.append(0)  # PNG filter: none
        for x in range(SIZE):
            colour = CLEAR
            for *box, radius, fill in SHAPES:
                if _inside(x, y, *box, radius):
                    colour = fill
            rows.extend(colour)
    return bytes(rows)


def png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    target = Path(__file__).resolve().parents[1] / "extension" / "images" / "icon.png"
    target.write_bytes(png(SIZE, SIZE, pixels()))
    print(target)


if __name__ == "__main__":
    main()
