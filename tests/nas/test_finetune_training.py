"""Standalone training: exact resumption, distillation and mixup, the Wilson interval."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nas.finetune import Recipe, distillation_loss, train_standalone
from nas.finetune.evaluation import wilson_interval


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=g)
    return TensorDataset(x, (x.mean(dim=(1, 2, 3)) > 0).long())


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))


@pytest.mark.parametrize("options", [{}, {"mixup_alpha": 0.4}])
def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, options) -> None:
    recipe = Recipe(epochs=3, batch_size=16, **options)
    whole = _model()
    train_standalone(whole, _data(), recipe)
    part = _model()
    ckpt = tmp_path / "t.pt"
    stopped = Recipe(epochs=3, batch_size=16, **options)

    class Stop(Exception):
        pass

    def stop_after_one(epoch: int, _metrics: object) -> None:
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train_standalone(part, _data(), stopped, checkpoint=ckpt, on_epoch_end=stop_after_one)
    resumed = _model()
    result = train_standalone(resumed, _data(), recipe, checkpoint=ckpt)
    assert result.resumed_from_epoch == 1 and len(result.history) == 3
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="another recipe"):
        train_standalone(_model(), _data(), Recipe(epochs=4, batch_size=16), checkpoint=ckpt)


def test_distillation_needs_a_teacher_and_pulls_towards_it() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    assert float(distillation_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(distillation_loss(logits, torch.tensor([[0.0, 2.0]]), 4.0)) > 0
    with pytest.raises(ValueError, match="teacher"):
        train_standalone(_model(), _data(), Recipe(epochs=1, distill_weight=0.5))
    result = train_standalone(_model(), _data(), Recipe(epochs=1, batch_size=16, distill_weight=0.5), teacher=_model())
    assert len(result.history) == 1


def test_wilson_interval() -> None:
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-3) and high == pytest.approx(0.9448, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 0)
