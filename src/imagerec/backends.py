"""Which Keras backend runs: TensorFlow (the default, and the only one for export, serving and tf.distribute)
or JAX (XLA on GPUs/TPUs, and machines without TensorFlow).

Keras reads KERAS_BACKEND once, when it is first imported, so `use` must run before anything imports Keras:
`imagerec train --backend jax` calls it first thing. Nothing here imports Keras or TensorFlow.
"""

import importlib.util
import os
import sys

from imagerec.errors import UserError

BACKENDS = ("tensorflow", "jax")
DEFAULT = "tensorflow"


def use(name: str) -> None:
    """Make `name` the Keras backend of this process. UserError for an unknown backend, one that is not
    installed, or a change after Keras was imported with another."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if (name == "tensorflow" and not has_tensorflow()) or (name != "tensorflow" and not importlib.util.find_spec(name)):
        extra = "" if name == "tensorflow" else f" (pip install 'imagerec[{name}]')"
        raise UserError(f"the {name} backend is not installed{extra}")
    if "keras" in sys.modules:
        if current() != name:
            raise UserError(f"Keras was already imported with the {current()} backend; choose the backend "
                            f"before importing Keras (or set KERAS_BACKEND={name})")
        return
    os.environ["KERAS_BACKEND"] = name


def current() -> str:
    """The backend Keras runs (or will run, if it is not imported yet)."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", DEFAULT)


def choose_installed() -> None:
    """Before Keras is imported, with no KERAS_BACKEND set, on a machine with JAX but no TensorFlow: make JAX the
    backend (Keras itself would import TensorFlow, and fail). The CLI calls it first thing."""
    if "keras" in sys.modules or "KERAS_BACKEND" in os.environ or has_tensorflow():
        return
    if importlib.util.find_spec("jax") is not None:
        os.environ["KERAS_BACKEND"] = "jax"


def is_tensorflow() -> bool:
    return current() == "tensorflow"


def has_tensorflow() -> bool:
    """True when TensorFlow is installed (export, serving and SavedModels need it, whatever the backend)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a finder refused it; sys.modules holds None for it
        return False


def require_tensorflow(what: str) -> None:
    """UserError unless Keras runs on TensorFlow: `what` is built on TensorFlow itself."""
    if not is_tensorflow():
        raise UserError(f"{what} needs the tensorflow backend; this process runs Keras on {current()}")
