"""BN recalibration: exact cumulative statistics, momentum restored, eval mode, skippable."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from supernet import batch_norm_layers, build_supernet, recalibrate_bn


def _batches(n: int, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 1, 8, 8, generator=gen) * 2 + 1, torch.zeros(size, dtype=torch.long)) for _ in range(n)]


def _subnet(space, seed: int = 0) -> nn.Module:
    net = build_supernet(space, seed=seed)
    return net.extract(space.sample(np.random.default_rng(seed)))


def test_running_stats_are_the_exact_average_over_the_batches(tiny_space):
    model = _subnet(tiny_space)
    layers = batch_norm_layers(model)
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
    hooks = [m.register_forward_pre_hook(lambda mod, args, i=i: inputs[i].append(args[0].detach().clone()))
             for i, m in enumerate(layers)]
    batches = _batches(5)
    used = recalibrate_bn(model, batches, num_batches=4)
    for h in hooks:
        h.remove()
    assert used == 4
    for i, m in enumerate(layers):
        seen = inputs[i]
        assert len(seen) == 4
        # equal batch sizes: the cumulative average of the batch means is the mean over all activations
        mean = torch.cat(seen).mean(dim=(0, 2, 3))
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-5, atol=1e-6)
        # and the running variance is the average of the (unbiased) batch variances
        var = torch.stack([t.var(dim=(0, 2, 3), unbiased=True) for t in seen]).mean(dim=0)
        torch.testing.assert_close(m.running_var, var, rtol=1e-5, atol=1e-6)
        assert m.num_batches_tracked is not None and int(m.num_batches_tracked) == 4


def test_first_layer_mean_matches_the_data(tiny_space):
    model = _subnet(tiny_space)
    batches = _batches(3)
    recalibrate_bn(model, (x for x, _ in batches), num_batches=3)  # bare tensors work too
    conv = cast(nn.Conv2d, model.get_submodule("stem.0"))
    norm = cast(nn.BatchNorm2d, model.get_submodule("stem.1"))
    with torch.no_grad():
        expected = conv(torch.cat([x for x, _ in batches])).mean(dim=(0, 2, 3))
    torch.testing.assert_close(norm.running_mean, expected, rtol=1e-5, atol=1e-6)


def test_momentum_restored_and_eval_mode(tiny_space):
    model = _subnet(tiny_space)
    layers = batch_norm_layers(model)
    for i, m in enumerate(layers):
        m.momentum = 0.1 + 0.01 * i
    model.train()
    recalibrate_bn(model, _batches(2), 2)
    assert not model.training and not any(m.training for m in model.modules())
    assert [m.momentum for m in layers] == [0.1 + 0.01 * i for i in range(len(layers))]


def test_only_batch_norms_in_train_mode_during_recalibration():
    seen: list[bool] = []
    drop = nn.Dropout(0.9)
    drop.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    model = nn.Sequential(nn.Conv2d(1, 4, 1), drop, nn.BatchNorm2d(4))
    recalibrate_bn(model, _batches(2), 2)
    assert seen == [False, False]  # dropout does not perturb the statistics


def test_none_skips_and_leaves_statistics(tiny_space):
    model = _subnet(tiny_space)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate_bn(model, _batches(2), None) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fewer_batches_than_asked_uses_what_there_is(tiny_space):
    model = _subnet(tiny_space)
    assert recalibrate_bn(model, _batches(2), 10) == 2


def test_no_batches_is_an_error_and_statistics_are_kept(tiny_space):
    model = _subnet(tiny_space)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(model, [], 5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.momentum == 0.1 for m in batch_norm_layers(model))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_batches_must_be_a_positive_int(tiny_space, bad):
    with pytest.raises(ValueError, match="num_batches must be an integer >= 1"):
        recalibrate_bn(_subnet(tiny_space), _batches(1), bad)


def test_recalibration_does_not_touch_the_supernet(tiny_space):
    net = build_supernet(tiny_space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = net.extract(tiny_space.sample(np.random.default_rng(0)))
    recalibrate_bn(model, _batches(3), 3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
