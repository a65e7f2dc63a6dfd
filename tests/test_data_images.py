"""One image file → uint8 pixels: formats, modes, reduced JPEG decoding, and the checks made before decoding."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from imagerec import data

import hostile_files
from helpers import png_bytes


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


def test_larger_images_are_resized_on_the_shorter_side_and_center_cropped(tmp_path):
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40, 0], wide[:, 40:80, 1], wide[:, 80:, 2] = 255, 255, 255  # red | green | blue thirds
    decoded = data.decode_image(png_bytes(wide), (20, 20)).astype(int)
    assert decoded.shape == (20, 20, 3)
    inner = decoded[:, 2:-2]  # bilinear blends the outermost columns with their neighbours
    assert (inner[..., 1] > 250).all() and (inner[..., [0, 2]] < 5).all()  # only the center third is left


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
