"""SHA-256 manifests of the artefacts imagerec writes, and the check that decides whether one may be loaded.

A model file is code: a legacy `.h5` or a SavedModel can run operations or Python when loaded, and Keras'
`safe_mode` does not cover them (CVE-2025-9905, CVE-2026-1669, CVE-2026-12480). So every model imagerec
writes is recorded, with the SHA-256 of each of its files, in a `manifest.json` in the folder it was written
to (the run directory, or an export's folder). Only two places may vouch for an artefact: the folder it sits
in, and for a nested artefact of the run-directory layout (`RUN/saved_model/my_model`) the run directory. A
manifest anywhere else above it (`/tmp`, `~/Downloads`) proves nothing about it and is not read.

`verified_copy` is the check a loader uses: it copies the artefact into a private folder, hashing the bytes it
copies, and compares those hashes with the manifest, so the loader opens exactly the bytes that were checked;
swapping a symlink or a folder after the check changes nothing that is loaded.

What this proves, and what it does not: a file that matches its manifest is byte for byte what imagerec
wrote there, so a swapped or edited artefact is caught. A manifest is not a signature: whoever hands you a
whole folder can hand you a matching manifest too. Models from elsewhere should be `.keras` files (loaded in
Keras' safe mode) or loaded with `--trust-model` after deciding to trust their author.
"""

import hashlib
import json
import os
from pathlib import Path

from imagerec import fileio
from imagerec.artefacts import layout

MANIFEST_FILE = layout.MANIFEST_FILE
MANIFEST_VERSION = 1

VERIFIED = "verified"  # listed in a manifest, and every file matches
UNLISTED = "unlisted"  # no manifest above it lists it
MODIFIED = "modified"  # listed, but a file differs, is missing or was added since it was written


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_files(path: Path) -> list:
    """The files that make up an artefact: the file itself, or every file under a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        return sorted(child for child in path.rglob("*") if child.is_file())
    return [path]


def record(root, artefacts) -> Path:
    """Add the SHA-256 of every file of each artefact (paths under `root`) to `root/manifest.json`.

    Entries for other artefacts already in the manifest are kept; an artefact written again replaces its
    old entries (files it no longer has are dropped). Written atomically.
    """
    root = Path(root)
    entries = _read(root / MANIFEST_FILE) or {}
    for artefact in map(Path, artefacts):
        prefix = artefact.relative_to(root).as_posix()
        entries = {name: digest for name, digest in entries.items()
                   if name != prefix and not name.startswith(prefix + "/")}
        for file in artefact_files(artefact):
            entries[file.relative_to(root).as_posix()] = sha256_file(file)
    fileio.write_json(root / MANIFEST_FILE, {"manifest_version": MANIFEST_VERSION, "algorithm": "sha256",
                                             "files": dict(sorted(entries.items()))})
    return root / MANIFEST_FILE


def check(path) -> tuple:
    """(state, detail) for the artefact at `path`: VERIFIED, UNLISTED or MODIFIED, and a short reason."""
    path = Path(path).resolve()
    return _compare(path, {file.relative_to(path).as_posix() if path.is_dir() else "": sha256_file(file)
                           for file in artefact_files(path)})


def verified_copy(path, destination, name: str | None = None) -> tuple:
    """Copy the artefact at `path` into the folder `destination`, hashing what is copied; (state, detail, copy).

    The state says whether the copy, not the original, is what a manifest vouches for: load the copy and the
    checked bytes are the loaded bytes. `destination` should be private (tempfile.mkdtemp's 0700 folder). The
    copy is called `name` (default: the name of the file a symbolic link points to): a loader that picks its
    format from the name must be given the name of the format that was checked.
    """
    source = Path(path).resolve()
    copy = Path(destination) / (name or source.name)
    digests = _copy_hashing(source, copy)
    return (*_compare(source, digests), copy)


def read_checked(path) -> tuple:
    """(state, detail, content) of a small file read once: the state is that of the bytes returned."""
    source = Path(path).resolve()
    content = source.read_bytes()
    return (*_compare(source, {"": hashlib.sha256(content).hexdigest()}), content)


def _copy_hashing(source: Path, copy: Path) -> dict:
    """{path relative to the artefact ("" for a file): SHA-256 of the bytes written to `copy`}."""
    if not source.is_dir():
        return {"": _copy_file_hashing(source, copy)}
    digests = {}
    for folder, _, names in os.walk(source):  # symbolic links to folders are not followed
        for name in names:
            relative = (Path(folder) / name).relative_to(source)
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            digests[relative.as_posix()] = _copy_file_hashing(source / relative, copy / relative)
    return digests


def _copy_file_hashing(source: Path, copy: Path) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(copy, "xb") as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
    return digest.hexdigest()


def _vouching_manifest(path: Path):
    """(folder, entries) of the one manifest that may vouch for `path`, or (None, None)."""
    for folder in layout.describing_folders(path):
        entries = _read(folder / MANIFEST_FILE)
        if entries is None:
            continue
        prefix = path.relative_to(folder).as_posix()
        listed = {name: digest for name, digest in entries.items()
                  if name == prefix or name.startswith(prefix + "/")}
        if listed:
            return folder, listed
    return None, None


def _compare(path: Path, digests: dict) -> tuple:
    """Compare the artefact's files (`digests`, relative to the artefact) with the manifest vouching for it."""
    folder, listed = _vouching_manifest(path)
    if folder is None:
        return UNLISTED, f"no {MANIFEST_FILE} beside it lists it"
    prefix = path.relative_to(folder).as_posix()
    present = {f"{prefix}/{name}" if name else prefix: digest for name, digest in digests.items()}
    for name in sorted(set(present) - set(listed)):
        return MODIFIED, f"{name} was added after {folder / MANIFEST_FILE} was written"
    for name, digest in listed.items():
        if name not in present:
            return MODIFIED, f"{name} is missing"
        if present[name] != digest:
            return MODIFIED, f"{name} does not match its SHA-256 in {folder / MANIFEST_FILE}"
    return VERIFIED, f"matches {folder / MANIFEST_FILE}"


def _read(manifest_path: Path):
    """The manifest's {relative path: sha256}, or None when there is none (an unreadable one counts as none)."""
    try:
        content = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = content["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict) or not all(isinstance(value, str) for value in files.values()):
        return None
    return files
