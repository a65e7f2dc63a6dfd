"""Dynamic batching: concurrent requests in one model call, each caller getting its own rows."""

import asyncio

import numpy as np
import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import (send_all, instances_request)

httpx = pytest.importorskip("httpx")


def test_fifty_concurrent_requests_give_the_sequential_results_in_batches(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(batch_window_ms=20))
    calls = [("POST", "/v1/models/cifar10:predict", instances_request(dataset.x_test[index:index + 1]))
             for index in range(50)]
    one_at_a_time = [asyncio.run(send_all(app, [call]))[0].json()["predictions"][0] for call in calls]
    concurrent = [response.json()["predictions"][0] for response in asyncio.run(send_all(app, calls))]
    # Same labels; probabilities equal up to float32 summation order, which depends on the batch size.
    assert np.array_equal(np.argmax(concurrent, 1), np.argmax(one_at_a_time, 1))
    np.testing.assert_allclose(concurrent, one_at_a_time, atol=1e-6)
    assert max(app.state.batcher.batch_sizes[-50:]) > 1  # requests really were merged into batches


def test_batcher_pads_to_a_few_shapes_and_returns_each_callers_rows():
    from imagerec.serve import Batcher

    shapes = []

    def reference(batch):
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    def predict(batch):
        shapes.append(len(batch))
        return reference(batch)

    batcher = Batcher(predict, max_batch_size=128, window_s=0)
    assert batcher.bucket_sizes() == [*range(1, 33), 64, 128]
    images = np.random.default_rng(0).random((300, 2, 2, 3)).astype(np.float32)
    for count in (1, 3, 32, 33, 70, 300):
        np.testing.assert_allclose(batcher.predict_padded(images[:count]), reference(images[:count]), rtol=1e-6)
    assert shapes == [1, 3, 32, 64, 128, 128, 128, 64]  # 33 and 70 padded up; 300 = 128 + 128 + (44 -> 64)

    async def three_callers():
        return await asyncio.gather(*(batcher.predict(images[start:start + 5]) for start in (0, 5, 10)))

    for start, rows in zip((0, 5, 10), asyncio.run(three_callers())):
        np.testing.assert_allclose(rows, reference(images[start:start + 5]), rtol=1e-6)
