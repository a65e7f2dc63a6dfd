"""Image-folder trees: the image size a folder trains at when none is given."""

from imagerec import data

from helpers import write_tree_of


def test_a_folder_without_a_size_gets_one_from_its_images_and_says_so(tmp_path, capsys):
    small = data.load_dataset(str(write_tree_of(tmp_path / "small", [(100, 80), (90, 120)])), cache_dir=tmp_path / "c")
    assert small.image_shape == (80, 80, 3)  # median shorter side 85, rounded down to a multiple of 16
    assert "image size 80x80" in capsys.readouterr().err
    large = data.load_dataset(str(write_tree_of(tmp_path / "large", [(800, 600)])), cache_dir=tmp_path / "c")
    assert large.image_shape == (128, 128, 3)  # capped
    tiny = data.load_dataset(str(write_tree_of(tmp_path / "tiny", [(12, 12)])), cache_dir=tmp_path / "c")
    assert tiny.image_shape == (32, 32, 3)  # at least CIFAR's size
