"""Image issues, by cleanvision's rules, at the files' own size: each planted problem found with its kind,
ordinary images not flagged."""

import numpy as np
from PIL import Image

from imagerec.diagnosis import quality
from helpers import distinct_image, png_bytes, save_image


def test_each_image_issue_is_found_and_ordinary_images_are_not(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for index in range(30):
        files[f"ok_{index}"] = Image.fromarray(distinct_image(index % 3, rng))
    files["blank"] = Image.new("RGB", (32, 32), (10, 200, 30))
    files["dark"] = Image.fromarray((distinct_image(0, rng) * 0.15).astype(np.uint8))
    files["light"] = Image.fromarray((242 + distinct_image(1, rng) / 255 * 13).astype(np.uint8))
    files["grey"] = Image.fromarray(distinct_image(2, rng)).convert("L")
    files["tiny"] = Image.fromarray(distinct_image(0, rng, (5, 5)))
    files["strip"] = Image.fromarray(np.tile(distinct_image(1, rng), (1, 4, 1)))  # 32x128: odd aspect
    files["blurry"] = Image.fromarray(distinct_image(2, rng, (8, 8))).resize((32, 32), Image.Resampling.BICUBIC)
    paths = []
    for name, image in files.items():
        paths.append(tmp_path / f"{name}.png")
        save_image(paths[-1], image)
    paths.append(tmp_path / "corrupt.png")
    paths[-1].write_bytes(png_bytes(distinct_image(0, rng))[:50])
    names = [path.stem for path in paths]
    found = quality.quality_findings(quality.file_statistics(paths), names, ["train"] * len(names))
    kinds = {}
    for finding in found:
        kinds.setdefault(finding.path, set()).add(finding.kind)
    assert kinds.pop("blank") == {"blank"} and kinds.pop("dark") == {"dark"} and "light" in kinds.pop("light")
    assert kinds.pop("grey") == {"grayscale"} and "odd_size" in kinds.pop("tiny")
    assert "odd_aspect_ratio" in kinds.pop("strip") and "blurry" in kinds.pop("blurry")
    assert kinds.pop("corrupt") == {"unreadable"}
    assert kinds == {}  # none of the 30 ordinary images


def test_a_large_file_is_read_reduced_but_measured_at_its_own_size(tmp_path):
    save_image(tmp_path / "big.png", Image.fromarray(distinct_image(0, np.random.default_rng(1), (600, 900))))
    statistics, = quality.file_statistics([tmp_path / "big.png"])
    assert np.isclose(statistics["side"], np.sqrt(600 * 900)) and np.isclose(statistics["aspect"], 600 / 900)


def test_arrays_without_files_are_judged_too():
    images = np.stack([distinct_image(0, np.random.default_rng(2)), np.zeros((32, 32, 3), np.uint8)])
    found = quality.quality_findings(quality.array_statistics(images), ["train#0", "train#1"], ["train"] * 2)
    assert [(finding.path, finding.kind) for finding in found] == [("train#1", "blank")]


def test_the_batched_numbers_are_pillows_per_image_numbers():
    rng = np.random.default_rng(3)
    stack = np.stack([distinct_image(index % 3, rng) for index in range(40)]
                     + [np.full((32, 32, 3), 9, np.uint8), (distinct_image(1, rng) * 0.1).astype(np.uint8)])
    batched = quality.batch_statistics(stack)
    for row, image in enumerate(stack):
        reference = quality.image_statistics(image, (32, 32), "RGB")
        for key in ("dark", "light", "entropy", "blur", "spread", "grayscale"):
            assert np.isclose(batched[key][row], reference[key], atol=1e-6), (row, key)
