"""A JPEG's structure read from its marker segments, without decoding a pixel: how much work decoding it is.

libjpeg decodes every scan of a progressive JPEG over the whole image's coefficients, at full size even when
Pillow's `draft` asks for 1/8 scale, and a decode cannot be interrupted: a 223 KB file that repeats one
refinement scan 1,000 times costs ~36 s of a core (each scan ~36 ms at 6000x6000). libjpeg-turbo's own answer
is a cap on scans (`djpeg -maxscans`, TurboJPEG's scan limit); Pillow exposes none, so the markers are walked
here: segments by their declared lengths (so a thumbnail inside EXIF is not counted), and each scan's
entropy-coded data to the next marker. Also read: the frame's declared size, so that a header patched to
6000x6000 over 16x16 of data (which libjpeg pads with gray, with only a warning) is caught as truncated.
"""

import dataclasses
import math
import re

# Markers that start a frame (SOF0-3, 5-7 Huffman; 9-11, 13-15 arithmetic); C4 (DHT), C8 (JPG), CC (DAC) are not.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
# The end of a scan's entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart marker
# (D0-D7) or another fill byte.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class MalformedJpeg(ValueError):
    """The bytes are not a well-formed JPEG stream (the message says where)."""


@dataclasses.dataclass(frozen=True)
class JpegStructure:
    width: int  # as the frame header declares (0: unknown)
    height: int
    scans: int  # SOS segments before EOI: what libjpeg decodes one by one
    entropy_bytes: int  # entropy-coded data over all scans
    minimum_entropy_bytes: int  # the least a Huffman-coded frame of this size can hold (0 when no bound holds)

    @property
    def looks_truncated(self) -> bool:
        return self.entropy_bytes < self.minimum_entropy_bytes


def read_structure(data: bytes) -> JpegStructure:
    """The structure of the JPEG in `data`; MalformedJpeg for a stream without SOI or with a broken segment."""
    if data[:2] != b"\xff\xd8":
        raise MalformedJpeg("no start-of-image marker")
    position, frame, scans, entropy_bytes = 2, None, 0, 0
    while position + 1 < len(data):
        if data[position] != 0xFF:
            raise MalformedJpeg(f"no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == _EOI:
            break
        if marker == _SOI or 0xD0 <= marker <= 0xD7:  # stand-alone markers carry no length
            position += 2
            continue
        if position + 4 > len(data):
            break
        end = position + 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _FRAME_MARKERS and frame is None:
            frame = (marker, data[position + 4:end])
        if marker == _SOS:
            scans += 1
            found = _NEXT_MARKER.search(data, end)
            entropy_end = found.start() if found else len(data)
            entropy_bytes += max(0, entropy_end - end)
            end = entropy_end
        position = end
    width, height, minimum = _frame_size(frame)
    return JpegStructure(width, height, scans, entropy_bytes, minimum)


def _frame_size(frame) -> tuple:
    """(width, height, minimum entropy bytes) from the first frame header (SOFn)."""
    if frame is None:
        return 0, 0, 0
    marker, body = frame
    if len(body) < 6:
        raise MalformedJpeg("frame header too short")
    height, width, components = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    sampling = [body[6 + 3 * index + 1] for index in range(components) if 6 + 3 * index + 1 < len(body)]
    if not sampling or height == 0 or marker in _ARITHMETIC_FRAMES or marker == 0xC3:
        return width, height, 0  # height from a later DNL, arithmetic or lossless coding: no such bound
    horizontal = max(value >> 4 for value in sampling) or 1
    vertical = max(value & 15 for value in sampling) or 1
    # Every minimum coded unit holds at least one DC difference, whose Huffman code is at least one bit long.
    units = math.ceil(width / (8 * horizontal)) * math.ceil(height / (8 * vertical))
    return width, height, units // 8
