"""Facts about the machine a run or benchmark ran on: the CPU, its bfloat16 support, library versions."""

import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_has_bf16() -> bool:
    """True when the CPU has bfloat16 instructions (AVX512_BF16 or AMX), which mixed_bfloat16 needs to be fast."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def versions() -> dict:
    """imagerec, Python, Keras (and its backend), TensorFlow and JAX (None when not installed) and NumPy
    versions, the CPU, the accelerator Keras runs on and the platform (JSON-ready)."""
    import keras
    import numpy as np

    import imagerec

    return {"imagerec": imagerec.__version__, "cpu": cpu_name(), "python": platform.python_version(),
            "keras": keras.__version__, "keras_backend": keras.backend.backend(),
            "tensorflow": _version_of("tensorflow"), "jax": _version_of("jax"), "numpy": np.__version__,
            "accelerator": accelerator(), "platform": platform.platform(), "processor": platform.machine()}


def _version_of(package: str):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def accelerator():
    """The GPU (or TPU) Keras' backend runs on, by name; None on a CPU."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else getattr(device, "device_kind", device.platform)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", "GPU")
    return None
