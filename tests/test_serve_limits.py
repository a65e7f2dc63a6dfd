"""Serve limits: every field has a ceiling."""


import pytest

from imagerec.serve import ServeLimits


@pytest.mark.parametrize("field, value", [("max_batch_size", 10**9), ("max_body_mb", 1e30), ("workers", 10**6),
                                          ("max_pending_mb", 8.0)])
def test_serve_limits_beyond_sense_are_refused(field, value):
    from imagerec.errors import UserError

    with pytest.raises(UserError, match=field):
        ServeLimits(**{field: value})
