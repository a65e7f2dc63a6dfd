"""Archives of image folders: loaded like the folder, and hostile ones refused before extracting."""

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imagerec import data
from imagerec.errors import UserError

from helpers import save_image, solid_rgb


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".zip"])
def test_archives_of_a_tree_load_like_the_folder(mixed_tree, tmp_path, suffix):
    archive_path = tmp_path / f"tree{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive_path, "w") as archive:
            for file in mixed_tree.rglob("*"):
                archive.write(file, Path("top") / file.relative_to(mixed_tree))
    else:
        with tarfile.open(archive_path, "w:gz") as archive:
            archive.add(mixed_tree, arcname="top")
    folder = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    packed = data.load_dataset(str(archive_path), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(np.sort(folder.x_train.reshape(-1)), np.sort(packed.x_train.reshape(-1)))
    assert packed.class_names == folder.class_names
    assert len(list((tmp_path / "cache" / "extracted").iterdir())) == 1  # extracted once, into the cache


def _bomb_archive(path: Path, suffix: str, big_bytes: int = 50 * 10**6) -> Path:
    """A valid image tree plus one file of zeros that compresses ~1000x: an archive bomb in miniature."""
    tree = path.parent / "bomb-tree"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            save_image(tree / split / name / "a.png", solid_rgb((1, 2, 3)))
    (tree / "train" / "cat" / "zeros.bin").write_bytes(bytes(big_bytes))
    archive = path.with_suffix(suffix) if suffix == ".zip" else path.with_name(path.name + suffix)
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
            for file in sorted(tree.rglob("*")):
                handle.write(file, file.relative_to(tree.parent))
    else:
        with tarfile.open(archive, "w:gz") as handle:
            handle.add(tree, arcname="bomb-tree")
    return archive


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_an_archive_bomb_is_refused_and_nothing_is_left_in_the_cache(suffix, tmp_path):
    archive = _bomb_archive(tmp_path / "data", suffix)
    assert archive.stat().st_size < 200_000  # 50 MB of zeros inside
    with pytest.raises(UserError, match=r"expands to 50\.0 MB, over the limit of .*100x the archive's size"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # no partial extraction
    with pytest.raises(UserError, match=r"over the limit of 10\.0 MB \(`max_extract_bytes`\)"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache", max_extract_bytes=10**7)
    loaded = data.load_dataset(str(archive), cache_dir=tmp_path / "cache", max_extract_bytes=10**8)
    assert loaded.class_names == ("cat", "dog") and loaded.skipped_count == 1  # zeros.bin is no image


def test_a_zip_that_lies_about_its_sizes_is_stopped(tmp_path):
    """The central directory's sizes are what zipfile enforces while extracting: a lie ends in an error."""
    archive = _bomb_archive(tmp_path / "data", ".zip", big_bytes=10**6)
    content = bytearray(archive.read_bytes())
    # Declare 1,000 bytes for zeros.bin in its central-directory entry (uncompressed size at offset 24).
    entry = content.rindex(b"PK\x01\x02", 0, content.index(b"zeros.bin", content.index(b"PK\x01\x02")))
    content[entry + 24:entry + 28] = (1000).to_bytes(4, "little")
    archive.write_bytes(bytes(content))
    with pytest.raises(UserError, match="cannot read archive"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


def _tar_with(path: Path, extra) -> Path:
    """A tar.gz of a valid two-class tree plus what `extra(archive)` adds."""
    tree = path.parent / "tree"
    for name in ("cat", "dog"):
        save_image(tree / "train" / name / "a.png", solid_rgb((1, 2, 3)))
    with tarfile.open(path, "w:gz") as archive:
        archive.add(tree, arcname="tree")
        extra(archive)
    return path


def _tar_member(archive, name: str, kind=tarfile.REGTYPE, link: str = "") -> None:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, link
    archive.addfile(member, io.BytesIO(b""))


def test_an_archive_of_thousands_of_empty_members_is_refused_before_extracting(tmp_path):
    archive = _tar_with(tmp_path / "many.tar.gz", lambda handle: [_tar_member(handle, f"tree/train/cat/{index}.png")
                                                                  for index in range(20_000)])
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(UserError, match=r"holds 20,00\d members, over the limit of 10,000"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.png"))


@pytest.mark.parametrize("name, kind, link, match", [
    ("/tmp/evil.png", tarfile.REGTYPE, "", "points outside"),
    ("tree/../../evil.png", tarfile.REGTYPE, "", "points outside"),
    ("tree/train/cat/link.png", tarfile.SYMTYPE, "a.png", "is a link"),
    ("tree/train/cat/hard.png", tarfile.LNKTYPE, "tree/train/cat/a.png", "is a link"),
    ("tree/train/cat/fifo", tarfile.FIFOTYPE, "", "is a special file"),
])
def test_tar_members_outside_the_folder_and_links_are_refused(tmp_path, name, kind, link, match):
    archive = _tar_with(tmp_path / "odd.tar.gz", lambda handle: _tar_member(handle, name, kind, link))
    with pytest.raises(UserError, match=match):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))


@pytest.mark.parametrize("name, symlink, match", [("../evil.png", False, "points outside"),
                                                  ("/abs/evil.png", False, "points outside"),
                                                  ("tree/train/cat/link.png", True, "is a link")])
def test_zip_members_outside_the_folder_and_links_are_refused(tmp_path, name, symlink, match):
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for label in ("cat", "dog"):
            buffer = io.BytesIO()
            solid_rgb((1, 2, 3)).save(buffer, "PNG")
            handle.writestr(f"tree/train/{label}/a.png", buffer.getvalue())
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)  # how Info-ZIP stores a symbolic link: its target as content
        handle.writestr(info, "/etc/passwd" if symlink else "x")
    with pytest.raises(UserError, match=match):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
