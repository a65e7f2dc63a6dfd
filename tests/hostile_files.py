"""Hostile images made on the spot (the red team's of issue 20), for the tests and benchmarks/serve_load.py."""

import io
import struct

import numpy as np
from PIL import Image


def _segments(data: bytes) -> list:
    """(marker, start, end) of each JPEG segment, a scan's entropy-coded data included in its SOS segment."""
    position, segments = 2, []
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            segments.append((marker, position, position + 2))
            break
        end = position + 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        segments.append((marker, position, end))
        position = end
    return segments


def scan_bomb(side: int = 6000, repeats: int = 1000) -> bytes:
    """A grayscale progressive JPEG whose last refinement scan (its DHT + SOS) is repeated `repeats` times
    before EOI: 223 KB at the defaults, ~36 s of libjpeg's time."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    segments = _segments(data)
    last_scan = max(index for index, segment in enumerate(segments) if segment[0] == 0xDA)
    first = last_scan - 1 if segments[last_scan - 1][0] == 0xC4 else last_scan
    scan = data[segments[first][1]:segments[last_scan][2]]
    end_of_image = segments[-1][1]
    return data[:end_of_image] + scan * repeats + data[end_of_image:]


def patched_size_jpeg(side: int = 6000) -> bytes:
    """A 16x16 JPEG whose frame header says `side` x `side` (libjpeg pads the missing data with gray)."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def large_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (10, 20, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def ico_wrapping(png: bytes) -> bytes:
    """An ICO whose one entry is `png` (any size: the directory says 256x256, as for every large icon)."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def icns_wrapping(png: bytes) -> bytes:
    """An ICNS with one 'ic08' (256x256) entry that holds `png`, whatever its real size."""
    entry = b"ic08" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry
