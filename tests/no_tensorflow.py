"""Imported first by a test subprocess: TensorFlow and the server packages become unimportable, as on a
machine set up with JAX alone (pip's `imagerec --no-deps` plus keras, numpy, pillow, matplotlib, scikit-learn).

A finder that refuses them, rather than sys.modules["tensorflow"] = None: Keras takes a name in sys.modules
for an imported TensorFlow, which no TensorFlow-free machine would show.
"""

import sys

REFUSED = ("tensorflow", "h11", "uvicorn", "starlette", "fastapi")


class _RefuseTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"No module named {name!r} (refused by tests/no_tensorflow.py)")
        return None


sys.meta_path.insert(0, _RefuseTensorFlow())
