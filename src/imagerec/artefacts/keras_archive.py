"""A `.keras` file checked before Keras opens it: no member inflates like a zip bomb, no input is absurdly large.

A `.keras` file is a zip of `config.json`, `metadata.json` and the weights. Keras reads `config.json` whole
into memory and its own bomb guard starts at 4 GiB a member: a 2 MB file whose `config.json` inflates to
2 GiB of whitespace loaded in 33 s at 5 GB of memory. And a model whose input is declared 50000x50000 loads
fine, then takes 30 GB for one image (`predict` resizes images to the input; `serve` warms up at it). Both
are read here from the zip's directory and the config, before any layer is built.
"""

import json
import zipfile
from pathlib import Path

from imagerec.artefacts import model_info
from imagerec.errors import UserError

# Keras' own rule (a member over 100x its compressed size), with a floor of 16 MiB instead of 4 GiB: a real
# config is kilobytes to a few MB and compresses ~10x; weights barely compress.
MAX_EXPANSION = 100
EXPANSION_FLOOR_BYTES = 16 * 2**20
MAX_CONFIG_BYTES = 64 * 2**20  # config.json and metadata.json, whatever their ratio
MAX_TOTAL_BYTES = 8 * 2**30  # all members together (the largest Keras Applications backbones are ~0.5 GB)
SHAPE_KEYS = ("batch_shape", "batch_input_shape")  # an InputLayer's declared shape, in Keras 3 and Keras 2


def check(archive_path: Path, path: Path) -> None:
    """UserError when the .keras archive at `archive_path` (reported as `path`) inflates like a bomb or
    declares an input side over model_info.MAX_INPUT_SIDE."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            _check_sizes(archive.infolist(), path)
            config = _read_config(archive, path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"cannot load model {path}: a damaged .keras archive ({error})") from None
    for shape in _declared_shapes(config):
        model_info.check_input_shape(shape, path)


def _check_sizes(members: list, path: Path) -> None:
    total = 0
    for member in members:
        total += member.file_size
        json_member = member.filename.endswith(".json")
        bomb = member.file_size > EXPANSION_FLOOR_BYTES and member.file_size > MAX_EXPANSION * member.compress_size
        if bomb or (json_member and member.file_size > MAX_CONFIG_BYTES) or total > MAX_TOTAL_BYTES:
            raise UserError(f"refusing to load {path}: its member {member.filename!r} inflates from "
                            f"{member.compress_size:,} to {member.file_size:,} bytes (a zip bomb)")


def _read_config(archive: zipfile.ZipFile, path: Path):
    try:
        return json.loads(archive.read("config.json"))
    except KeyError:
        raise UserError(f"cannot load model {path}: it is not a .keras file (it has no config.json)") from None
    except (ValueError, RecursionError):
        raise UserError(f"cannot load model {path}: its config.json is not valid JSON") from None


def _declared_shapes(config):
    """Every list under one of SHAPE_KEYS anywhere in the config (nested models included)."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in SHAPE_KEYS and isinstance(value, list):
                    yield value
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
