import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from imagerec import data
from imagerec.errors import UserError

import hostile_files


def _save(path: Path, image: Image.Image, format_name=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format_name)


def _rgb(color, size=(32, 32)):
    return Image.new("RGB", size, color)


@pytest.fixture
def mixed_tree(tmp_path) -> Path:
    """Two classes of images in every common format, mode and size, plus a truncated and a non-image file."""
    root = tmp_path / "tree"
    red, blue = root / "train" / "red", root / "train" / "blue"
    _save(red / "a.jpg", _rgb((255, 0, 0)))
    _save(red / "b.png", _rgb((250, 0, 0), (64, 48)))
    _save(red / "c.webp", _rgb((240, 10, 10), (17, 90)))
    _save(red / "d.bmp", _rgb((255, 5, 0)))
    _save(blue / "e.png", _rgb((0, 0, 255)).convert("P"))  # palette
    _save(blue / "f.png", Image.new("L", (40, 40), 80))  # grayscale
    _save(blue / "g.png", Image.new("RGBA", (32, 32), (0, 0, 255, 255)))
    _save(blue / "h.tif", _rgb((0, 0, 250)).convert("CMYK"), "TIFF")
    jpeg = io.BytesIO()
    _rgb((0, 0, 255)).save(jpeg, format="JPEG")
    (blue / "truncated.jpg").write_bytes(jpeg.getvalue()[:200])
    (red / "notes.txt").write_text("not an image")
    (red / ".DS_Store").write_bytes(b"\0\1")  # hidden files are not data
    for name, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        _save(root / "test" / name / "t.png", _rgb(color))
    return root


def test_folder_decodes_every_format_to_32x32_rgb(mixed_tree, tmp_path):
    dataset = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("blue", "red")  # from the folders, sorted
    assert dataset.x_train.shape == (8, 32, 32, 3) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (2, 32, 32, 3)
    assert np.bincount(dataset.y_train).tolist() == [4, 4]
    red_means = dataset.x_train[dataset.y_train == 1].mean(axis=(1, 2))
    assert (red_means[:, 0] > 200).all() and (red_means[:, 2] < 40).all()
    grayscale = dataset.x_train[dataset.y_train == 0][1]
    assert np.all(np.abs(grayscale.astype(int) - 80) <= 1)


def test_corrupt_and_non_image_files_are_skipped_counted_and_listed(mixed_tree, tmp_path, capsys):
    dataset = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert dataset.skipped_count == 2
    skipped = sorted(Path(item["path"]).name for item in dataset.skipped)
    assert skipped == ["notes.txt", "truncated.jpg"]
    assert "skipped 2 unreadable file(s)" in capsys.readouterr().err
    assert dataset.summary()["skipped_count"] == 2


def test_cache_skips_decoding_and_is_invalidated_by_a_changed_file(mixed_tree, tmp_path, monkeypatch):
    first = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert len([path for path in (tmp_path / "cache" / "decoded").iterdir() if not path.name.startswith(".")]) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "decode_image", fail)
    second = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert second.skipped_count == first.skipped_count
    monkeypatch.undo()
    _save(mixed_tree / "train" / "red" / "new.png", _rgb((255, 0, 0)))
    third = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert len(third.y_train) == len(first.y_train) + 1


def test_tree_without_test_split_is_split_stratified_and_seeded(tmp_path):
    root = tmp_path / "tree"
    for name, color in (("a", (255, 0, 0)), ("b", (0, 255, 0))):
        for index in range(10):
            _save(root / "train" / name / f"{index}.png", _rgb((color[0], color[1], index * 20)))
    first = data.load_dataset(str(root), val_split=0.3, seed=1, cache_dir=tmp_path / "cache")
    assert np.bincount(first.y_test).tolist() == [3, 3]
    assert np.bincount(first.y_train).tolist() == [7, 7]
    assert first.test_split == "val-split 0.3"
    again = data.load_dataset(str(root), val_split=0.3, seed=1, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.x_test, again.x_test)


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


def _cifar_pickle_files(rng) -> dict:
    """A tiny archive in the official cifar-10-python format: 2 train batches of 6, a test batch of 4."""
    def batch(count):
        return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                             b"labels": [index % 3 for index in range(count)]}, protocol=2)

    meta = pickle.dumps({b"label_names": [b"apple", b"pear", b"plum"]}, protocol=2)
    return {"data_batch_1": batch(6), "data_batch_2": batch(6), "test_batch": batch(4), "batches.meta": meta}


def test_official_cifar_pickle_archive_and_folder(tmp_path):
    files = _cifar_pickle_files(np.random.default_rng(0))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    archive_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    for source in (folder, archive_path):
        dataset = data.load_dataset(str(source), cache_dir=tmp_path / "cache")
        assert dataset.class_names == ("apple", "pear", "plum")
        assert dataset.x_train.shape == (12, 32, 32, 3) and dataset.x_test.shape == (4, 32, 32, 3)
        original = np.frombuffer(pickle.loads(files["test_batch"], encoding="bytes")[b"data"][0], np.uint8)
        np.testing.assert_array_equal(dataset.x_test[0], original.reshape(3, 32, 32).transpose(1, 2, 0))


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    files = _cifar_pickle_files(np.random.default_rng(0))
    files["test_batch"] = pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    with pytest.raises(UserError, match="refusing to load"):
        data.load_dataset(str(folder))


def test_keras_download_failure_is_one_clear_error(monkeypatch, tmp_path):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example/cifar-10-python.tar.gz: None -- Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(UserError) as raised:
        data.load_dataset("cifar10")
    message = str(raised.value)
    assert "`data`" in message and "cifar-10-batches-py-target_archive" in message and "\n" not in message


@pytest.mark.parametrize("problem, match", [
    ("missing", "does not exist"),
    ("no_train", "no train/ folder"),
    ("empty_class", "no readable images in train/: empty"),
    ("no_images", "no readable images"),
    ("not_archive", "folder or a .tar.gz"),
    ("bad_archive", "cannot"),
])
def test_bad_data_sources_are_clear_errors(tmp_path, problem, match):
    root = tmp_path / "tree"
    if problem == "no_train":
        (root / "images").mkdir(parents=True)
    elif problem == "empty_class":
        for name in "abcde":
            _save(root / "train" / "full" / f"{name}.png", _rgb((1, 2, 3)))
            (root / "train" / "empty").mkdir(parents=True, exist_ok=True)
            (root / "train" / "empty" / f"{name}.jpg").write_bytes(b"nope")
    elif problem == "no_images":
        (root / "train" / "cls").mkdir(parents=True)
        for name in ("readme.txt", "notes.md", "data.csv"):
            (root / "train" / "cls" / name).write_text("hello")
    elif problem == "not_archive":
        root = tmp_path / "data.csv"
        root.write_text("a,b")
    elif problem == "bad_archive":
        root = tmp_path / "data.tar.gz"
        root.write_bytes(b"this is not gzip")
    with pytest.raises(UserError, match=match):
        data.load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_decode_image_composites_transparency_on_white_and_scales_16_bit():
    transparent = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(transparent, format="PNG")
    assert (data.decode_image(transparent.getvalue(), (4, 4)) == 255).all()
    sixteen = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(sixteen, format="PNG")
    assert (data.decode_image(sixteen.getvalue(), (8, 8)) == 40000 >> 8).all()


def test_decode_image_rejects_garbage():
    with pytest.raises(data.ImageDecodeError, match="not an image"):
        data.decode_image(b"\x00garbage")


def test_bad_val_split_is_refused(mixed_tree):
    with pytest.raises(UserError, match="between 0 and 1"):
        data.load_dataset(str(mixed_tree), val_split=1.5)


@pytest.mark.integration
def test_real_cifar_subset_loads(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    assert dataset.num_classes == 10 and "airplane" in dataset.class_names
    assert len(dataset.y_train) == 300 and len(dataset.y_test) == 100
    assert dataset.skipped_count == 0


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_with_the_same_result():
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)).resize((1024, 768)))
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, "JPEG", quality=95)
    content = buffer.getvalue()
    # 1/8 of each side (still >= 32), plus an eighth of the full size for its one scan
    assert data.decode_work(content, (32, 32)) == 128 * 96 + 1024 * 768 // 8
    png = io.BytesIO()
    Image.fromarray(smooth).save(png, "PNG")
    assert data.decode_work(png.getvalue(), (32, 32)) == 1024 * 768  # PNG has no reduced decode
    reduced = data.decode_image(content, (32, 32)).astype(int)
    with Image.open(io.BytesIO(content)) as full:
        reference = np.asarray(ImageOps.fit(full.convert("RGB"), (32, 32), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(reduced - reference).mean() < 3  # the same picture, to within JPEG's own error


def _bomb_archive(path: Path, suffix: str, big_bytes: int = 50 * 10**6) -> Path:
    """A valid image tree plus one file of zeros that compresses ~1000x: an archive bomb in miniature."""
    tree = path.parent / "bomb-tree"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            _save(tree / split / name / "a.png", _rgb((1, 2, 3)))
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


def test_a_cifar_pickle_archive_bomb_is_refused_before_reading_into_memory(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        for name, size in (("batches.meta", 10), ("test_batch", 10), ("data_batch_1", 50 * 10**6)):
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = size
            handle.addfile(member, io.BytesIO(bytes(size)))
    with pytest.raises(UserError, match="over the limit"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")


def test_a_file_name_with_a_newline_stays_on_the_warning_line(tmp_path, capsys):
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            _save(tmp_path / "tree" / split / name / "a.png", _rgb((1, 2, 3)))
    (tmp_path / "tree" / "train" / "cat" / "bad\nimagerec: forged.jpg").write_bytes(b"nope")
    data.load_dataset(str(tmp_path / "tree"), cache_dir=tmp_path / "cache", progress=False)
    warning = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(warning) == 1 and "bad\\nimagerec: forged.jpg" in warning[0]


def test_a_relative_source_is_recorded_absolute_so_a_run_finds_its_data_from_anywhere(image_folder, monkeypatch):
    monkeypatch.chdir(image_folder)
    dataset = data.load_dataset(f"../{image_folder.name}", progress=False)
    assert dataset.source == str(image_folder) and dataset.summary()["source"] == str(image_folder)


# ---------------------------------------------------------------- any image size, memory-mapped cache

@pytest.mark.parametrize("given, expected", [(64, (64, 64)), ("96", (96, 96)), ("96x128", (96, 128)),
                                             ((48, 40), (48, 40))])
def test_image_size_takes_n_or_h_by_w(given, expected):
    assert data.parse_image_size(given) == expected


@pytest.mark.parametrize("given", [0, -32, 2048, "abc", "12x", "0x0", True, (32,), 1.5])
def test_a_nonsense_image_size_is_one_clear_error(given):
    with pytest.raises(UserError, match="`image_size`"):
        data.parse_image_size(given)


def _tree_of(root: Path, sizes, per_class: int = 3, test: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test") if test else ("train",):
        for name in ("a", "b"):
            for index in range(per_class):
                size = sizes[index % len(sizes)]
                pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
                _save(root / split / name / f"{index}.jpg", Image.fromarray(pixels))
    return root


def test_a_folder_without_a_size_gets_one_from_its_images_and_says_so(tmp_path, capsys):
    small = data.load_dataset(str(_tree_of(tmp_path / "small", [(100, 80), (90, 120)])), cache_dir=tmp_path / "c")
    assert small.image_shape == (80, 80, 3)  # median shorter side 85, rounded down to a multiple of 16
    assert "image size 80x80" in capsys.readouterr().err
    large = data.load_dataset(str(_tree_of(tmp_path / "large", [(800, 600)])), cache_dir=tmp_path / "c")
    assert large.image_shape == (128, 128, 3)  # capped
    tiny = data.load_dataset(str(_tree_of(tmp_path / "tiny", [(12, 12)])), cache_dir=tmp_path / "c")
    assert tiny.image_shape == (32, 32, 3)  # at least CIFAR's size


def test_larger_images_are_resized_on_the_shorter_side_and_center_cropped(tmp_path):
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40, 0], wide[:, 40:80, 1], wide[:, 80:, 2] = 255, 255, 255  # red | green | blue thirds
    decoded = data.decode_image(_png(wide), (20, 20)).astype(int)
    assert decoded.shape == (20, 20, 3)
    inner = decoded[:, 2:-2]  # bilinear blends the outermost columns with their neighbours
    assert (inner[..., 1] > 250).all() and (inner[..., [0, 2]] < 5).all()  # only the center third is left


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_folders_are_cached_as_memory_maps_per_size_and_split(tmp_path):
    root = _tree_of(tmp_path / "tree", [(64, 48)], per_class=5, test=False)
    first = data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4)
    assert isinstance(first.x_train, np.memmap) and not first.x_train.flags.writeable
    assert first.x_train.shape == (6, 48, 48, 3) and first.x_test.shape == (4, 48, 48, 3)
    folders = lambda: sorted(path.name for path in (tmp_path / "cache" / "decoded").iterdir())  # noqa: E731
    assert len(folders()) == 1 and {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"} <= {
        path.name for path in (tmp_path / "cache" / "decoded" / folders()[0]).iterdir()}
    data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4)
    assert len(folders()) == 1  # re-used
    data.load_dataset(str(root), image_size=32, cache_dir=tmp_path / "cache", val_split=0.4)
    data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4, seed=1)
    assert len(folders()) == 3  # another size, another split: decoded apart


def test_decoding_reports_its_rate_and_time_left(tmp_path, capsys):
    data.load_dataset(str(_tree_of(tmp_path / "tree", [(40, 40)])), cache_dir=tmp_path / "cache")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("decoding")]
    assert lines and "12/12 files, " in lines[-1] and "/s, " in lines[-1] and lines[-1].endswith(" s")


def test_an_interrupted_decode_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    root = _tree_of(tmp_path / "tree", [(40, 40)], per_class=4)
    calls = []

    def interrupted(source, image_size, max_pixels=None):
        calls.append(source)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return np.zeros((*image_size, 3), np.uint8)

    monkeypatch.setattr(data, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.npy"))
    monkeypatch.undo()
    loaded = data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert loaded.x_train.shape[0] == 8 and loaded.x_train.any()  # decoded again, for real


def test_balanced_class_weights_make_every_class_weigh_the_same_in_total():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = data.class_weights(labels, 3, "balanced")
    np.testing.assert_allclose(weights, [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)], rtol=1e-6)
    np.testing.assert_allclose(np.bincount(labels) * weights, 10 / 3, rtol=1e-6)  # each class's total
    assert data.class_weights(labels, 3, "none") is None


def test_a_validation_hold_out_is_stratified_decoded_apart_and_leaves_the_test_split_alone(tmp_path):
    root = _tree_of(tmp_path / "tree", [(40, 40)], per_class=10)
    plain = data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    held = data.load_dataset(str(root), cache_dir=tmp_path / "cache", val_split=0.2, hold_out_validation=True)
    assert plain.y_val is None and plain.summary()["validation_count"] == 0
    assert isinstance(held.x_val, np.memmap) and np.bincount(held.y_val).tolist() == [2, 2]
    assert np.bincount(held.y_train).tolist() == [8, 8] and held.summary()["validation_count"] == 4
    np.testing.assert_array_equal(held.x_test, plain.x_test)  # the test split is the source's, untouched
    pooled = np.concatenate([held.x_train, held.x_val]).reshape(20, -1)
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, np.asarray(plain.x_train).reshape(20, -1)))
    in_memory = data.hold_out(plain, 0.2, seed=0)  # the same split, for a Dataset already in memory
    np.testing.assert_array_equal(in_memory.y_val, held.y_val)


# ---------------------------------------------------------------- hostile images (issue 20)

def _no_decoding(monkeypatch):
    from PIL import ImageFile

    def refuse(*_):
        raise AssertionError("a pixel was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_a_progressive_jpeg_scan_bomb_is_refused_from_its_markers(monkeypatch, tmp_path):
    bomb = hostile_files.scan_bomb(side=1000, repeats=300)  # small enough that the old code decodes it quickly
    _no_decoding(monkeypatch)
    for call in (data.decode_work, data.decode_image):
        with pytest.raises(data.ImageTooLargeError, match="306 scans, over the limit of 100"):
            call(bomb, (32, 32))
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bomb)  # the same guard for files (training data, `imagerec predict`)
    with pytest.raises(data.ImageTooLargeError, match="scans"):
        data.decode_image(path)


def test_the_work_of_a_progressive_jpeg_counts_every_scan_at_full_size():
    buffer = io.BytesIO()
    Image.new("L", (800, 800), 128).save(buffer, "JPEG", progressive=True, quality=50)  # 6 scans
    assert data.decode_work(buffer.getvalue(), (32, 32)) == 100 * 100 + 800 * 800 * 6 // 8
    assert data.decode_image(buffer.getvalue(), (32, 32)).shape == (32, 32, 3)  # a genuine one decodes


@pytest.mark.parametrize("wrap", [hostile_files.ico_wrapping, hostile_files.icns_wrapping])
def test_icons_that_decode_while_opening_are_refused_before_any_pixel(wrap, monkeypatch):
    icon = wrap(hostile_files.large_png(1500))
    _no_decoding(monkeypatch)
    for call in (data.decode_work, data.decode_image):
        with pytest.raises(data.ImageDecodeError, match="not one of JPEG"):
            call(icon, (32, 32))


def test_a_jpeg_whose_header_declares_more_than_its_data_holds_is_truncated():
    with pytest.raises(data.ImageDecodeError, match="truncated JPEG"):
        data.decode_image(hostile_files.patched_size_jpeg(), (32, 32))
    genuine = io.BytesIO()
    Image.new("RGB", (3000, 3000), (128, 128, 128)).save(genuine, "JPEG")  # flat: ~1 bit per block, still fine
    assert data.decode_image(genuine.getvalue(), (32, 32)).shape == (32, 32, 3)


def test_a_scan_bomb_in_training_data_is_skipped_with_its_reason(tmp_path):
    root = tmp_path / "tree"
    for name, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        for index in range(3):
            _save(root / "train" / name / f"{index}.png", _rgb(color))
    (root / "train" / "a" / "bomb.jpg").write_bytes(hostile_files.scan_bomb(side=1000, repeats=300))
    dataset = data.load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)
    assert dataset.skipped_count == 1 and "scans" in dataset.skipped[0]["reason"]


# ---------------------------------------------------------------- a full disk (issue 20)

def test_a_full_disk_while_decoding_is_one_line_and_leaves_nothing(small_disk, tmp_path):
    from conftest import run_cli, write_synthetic_folder

    folder = write_synthetic_folder(tmp_path / "images", train_per_class=40, test_per_class=5)
    cache = small_disk / "cache"
    # 180 images at 48x48 are 1.2 MB decoded: the memory map's pages cannot all be backed on this 1 MiB disk
    result = run_cli("train", "--recipe", "airbench_small", "--data", folder, "--cache-dir", cache, "--image-size", 48,
                     "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") <= 2 and "no space left" in result.stderr  # the size line, a progress line
    assert [path.name for path in (cache / "decoded").iterdir()] == []


def test_a_reservation_that_fails_for_space_is_a_user_error_with_nothing_left(image_folder, tmp_path, monkeypatch):
    import errno
    import os

    def no_space(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(UserError, match="no space left for the decoded images"):
        data.load_dataset(str(image_folder), cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []


# ---------------------------------------------------------------- hostile archives (issue 20)

def _tar_with(path: Path, extra) -> Path:
    """A tar.gz of a valid two-class tree plus what `extra(archive)` adds."""
    tree = path.parent / "tree"
    for name in ("cat", "dog"):
        _save(tree / "train" / name / "a.png", _rgb((1, 2, 3)))
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
            _rgb((1, 2, 3)).save(buffer, "PNG")
            handle.writestr(f"tree/train/{label}/a.png", buffer.getvalue())
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)  # how Info-ZIP stores a symbolic link: its target as content
        handle.writestr(info, "/etc/passwd" if symlink else "x")
    with pytest.raises(UserError, match=match):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")


def test_a_one_class_data_set_is_refused_in_one_line(tmp_path):
    for index in range(4):
        _save(tmp_path / "tree" / "train" / "only" / f"{index}.png", _rgb((index, 0, 0)))
        _save(tmp_path / "tree" / "test" / "only" / f"{index}.png", _rgb((index, 0, 0)))
    with pytest.raises(UserError, match="has 1 class \\(only\\); a classifier needs 2 or more"):
        data.load_dataset(str(tmp_path / "tree"), cache_dir=tmp_path / "cache", progress=False)
