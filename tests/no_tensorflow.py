"""Imported first by a test subprocess: TensorFlow becomes unimportable, as on a machine without it.

A finder that refuses it, rather than sys.modules["tensorflow"] = None: Keras takes a name in sys.modules
for an imported TensorFlow, which no TensorFlow-free machine would show.
"""

import sys


class _RefuseTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"No module named {name!r} (refused by tests/no_tensorflow.py)")
        return None


sys.meta_path.insert(0, _RefuseTensorFlow())
