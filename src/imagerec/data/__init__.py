"""Data: every supported source becomes the same `Dataset` of uint8 images; nothing here knows a model.

    load        `load_dataset`: picks the source (Keras' CIFAR-10, a folder tree, an archive, CIFAR pickles)
    dataset     `Dataset` (uint8 arrays per split, class names, what was skipped) and `parse_image_size`
    images      one file → uint8 RGB at a size, with the header and JPEG-marker checks (`jpeg_markers`)
    folders     image-folder trees: listing, default size, loading through the decode cache
    cache       decoding a tree once, on every core, into `.npy` memory maps (`progress` shows it)
    archives    extracting .tar.gz/.zip trees within limits    cifar   Keras' download and the pickles
    splits      stratified, seeded test and validation splits, and the seed they take
    exclude     `train --exclude`: a doctor's issues.csv or a list of paths, left out of the training rows
    corruptions corrupted copies of images (`corrupt`): CIFAR-10-C's, computed in `cifar_c` with its own
                parameters, and what users meet (GIF palettes, heavy JPEG, thumbnails, grayscale)

Data flows one way from here: arrays → batches (`training`) → model. The names below are importable from
`imagerec.data` itself, as before the package had rooms; each loads its module on first use.
"""

from imagerec import lazy

_EXPORTS = {
    "load_dataset": "load", "DEFAULT_SOURCE": "load", "KERAS_CIFAR10_LABEL": "load", "ARCHIVE_SUFFIXES": "load",
    "Dataset": "dataset", "parse_image_size": "dataset", "MAX_IMAGE_SIDE": "dataset",
    "CIFAR10_IMAGE_SIZE": "dataset", "decode_image": "images", "decode_work": "images",
    "ImageDecodeError": "images", "ImageTooLargeError": "images", "IMAGE_FORMATS": "images",
    "MAX_JPEG_SCANS": "images", "default_image_size": "folders", "DEFAULT_SIZE_BOUNDS": "folders",
    "hold_out": "splits", "stratified_rows": "splits", "check_seed": "splits", "default_cache_dir": "cache",
    "CIFAR10_CLASS_NAMES": "cifar",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
