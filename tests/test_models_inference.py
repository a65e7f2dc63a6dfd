"""The saved model around a net, and its FLOPs."""


from imagerec import models


def test_seed_forward_flops_match_a_hand_count():
    # conv: 2*H*W*k*k*Cin*Cout per layer; dense: 2*in*out
    convs = [(32, 3, 32), (32, 32, 32), (16, 32, 64), (16, 64, 64), (8, 64, 128), (8, 128, 128)]
    expected = sum(2 * size * size * 9 * c_in * c_out for size, c_in, c_out in convs)
    expected += 2 * 2048 * 1024 + 2 * 1024 * 10
    assert models.forward_flops(models.build_model("seed", 10)) == expected


def test_airbench_net_is_logits_and_gets_a_softmax_for_inference():
    net = models.build_model("airbench_small", 10)
    assert not models.outputs_probabilities(net)
    assert models.outputs_probabilities(models.build_model("seed", 10))
    assert models.inference_model(models.build_model("seed", 10)).name == "seed"  # unchanged
