"""A .keras zip checked before Keras opens it: bombs and absurd inputs."""

from pathlib import Path

import pytest

from imagerec.artefacts import loading
from imagerec.errors import UserError


def _rewritten_keras(source: Path, target: Path, edit) -> Path:
    """A copy of the .keras file `source` whose config.json is `edit(config text)`."""
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for member in original.infolist():
            content = original.read(member)
            copy.writestr(member.filename, edit(content.decode()) if member.filename == "config.json" else content)
    return target


def _shape_free_model(tmp_path) -> Path:
    import keras

    inputs = keras.Input(shape=(32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    model.save(tmp_path / "small.keras")
    return tmp_path / "small.keras"


@pytest.mark.parametrize("trust_model", [False, True])
def test_a_keras_file_declaring_a_huge_input_is_refused_at_load(tmp_path, trust_model):
    huge = _rewritten_keras(_shape_free_model(tmp_path), tmp_path / "huge.keras",
                            lambda config: config.replace("[null, 32, 32, 3]", "[null, 50000, 50000, 3]"))
    with pytest.raises(UserError, match=r"50000, 50000, 3\], over the limit of 1024"):
        loading.load_model(huge, trust_model=trust_model)


def test_a_keras_zip_bomb_is_refused_from_its_declared_sizes(tmp_path, monkeypatch):
    import keras

    bomb = _rewritten_keras(_shape_free_model(tmp_path), tmp_path / "bomb.keras",
                            lambda config: config[:-1] + " " * (40 * 2**20) + config[-1])
    assert bomb.stat().st_size < 2**20
    monkeypatch.setattr(keras.saving, "load_model", lambda *_, **__: pytest.fail("Keras opened the bomb"))
    with pytest.raises(UserError, match="config.json.*zip bomb"):
        loading.load_model(bomb)
