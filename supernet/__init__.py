"""Weight sharing: the supernet of a search space, path sampling, training, BN recalibration, extraction.

Imports ``search_spaces`` only. A cost function for the budget sampler (e.g. mult-adds from a profiler) is
passed in by the caller.
"""

from supernet._base import Supernet
from supernet._elastic import resize_input
from supernet._factory import build_supernet, supported_spaces
from supernet.bn import batch_norm_layers, recalibrate_bn
from supernet.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    load_supernet,
    remove_stale_temporaries,
    save_checkpoint,
)
from supernet.config import TrainConfig
from supernet.data import make_loader
from supernet.efficientnet import EfficientNetSupernet, full_network_spec
from supernet.nasnet import NASNetSupernet
from supernet.samplers import BudgetSampler, FairSampler, PathSampler, UniformSampler, fair_labels
from supernet.sandwich import SandwichRule, distillation_loss
from supernet.scoring import SubnetScore, correct_predictions, recalibrated_subnet, score_subnet, top1_accuracy
from supernet.shufflenet import ShuffleNetSupernet
from supernet.train import NonFiniteLossError, TrainResult, make_path_sampler, train_supernet

__all__ = [
    "CHECKPOINT_NAME",
    "BudgetSampler",
    "CheckpointError",
    "EfficientNetSupernet",
    "FairSampler",
    "NASNetSupernet",
    "NonFiniteLossError",
    "PathSampler",
    "SandwichRule",
    "ShuffleNetSupernet",
    "SubnetScore",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "UniformSampler",
    "batch_norm_layers",
    "build_supernet",
    "correct_predictions",
    "distillation_loss",
    "fair_labels",
    "full_network_spec",
    "load_checkpoint",
    "load_supernet",
    "make_loader",
    "make_path_sampler",
    "recalibrate_bn",
    "recalibrated_subnet",
    "remove_stale_temporaries",
    "resize_input",
    "save_checkpoint",
    "score_subnet",
    "supported_spaces",
    "top1_accuracy",
    "train_supernet",
]
