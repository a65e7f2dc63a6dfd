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
    """imagerec, Python, TensorFlow, Keras and NumPy versions, the CPU and the platform (JSON-ready)."""
    import keras
    import numpy as np
    import tensorflow as tf

    import imagerec

    return {"imagerec": imagerec.__version__, "cpu": cpu_name(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "processor": platform.machine()}
