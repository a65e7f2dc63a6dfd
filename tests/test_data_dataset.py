"""The image size a run trains at: N or HxW, within limits."""

import pytest

from imagerec import data
from imagerec.errors import UserError


@pytest.mark.parametrize("given, expected", [(64, (64, 64)), ("96", (96, 96)), ("96x128", (96, 128)),
                                             ((48, 40), (48, 40))])
def test_image_size_takes_n_or_h_by_w(given, expected):
    assert data.parse_image_size(given) == expected


@pytest.mark.parametrize("given", [0, -32, 2048, "abc", "12x", "0x0", True, (32,), 1.5])
def test_a_nonsense_image_size_is_one_clear_error(given):
    with pytest.raises(UserError, match="`image_size`"):
        data.parse_image_size(given)
