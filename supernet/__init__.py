"""Weight sharing: the supernet of a search space, path sampling, training, BN recalibration, extraction.

Imports ``search_spaces`` only. A cost function for the budget sampler (e.g. mult-adds from a profiler) is
passed in by the caller.
"""

from supernet._base import Supernet
from supernet._elastic import resize_input
from supernet._factory import build_supernet, supported_spaces
from supernet.bn import batch_norm_layers, recalibrate_bn
from supernet.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_supernet, save_checkpoint
from supernet.config import TrainConfig
from supernet.efficientnet import EfficientNetSupernet, full_network_spec
from supernet.evaluate import SubnetScore, evaluate, evaluate_subnet
from supernet.samplers import BudgetSampler, FairSampler, PathSampler, UniformSampler, fair_labels
from supernet.sandwich import SandwichRule, distillation_loss
from supernet.shufflenet import ShuffleNetSupernet
from supernet.train import NonFiniteLossError, TrainResult, make_sampler, train_supernet

__all__ = [
    "CHECKPOINT_NAME",
    "BudgetSampler",
    "EfficientNetSupernet",
    "FairSampler",
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
    "distillation_loss",
    "evaluate",
    "evaluate_subnet",
    "fair_labels",
    "full_network_spec",
    "load_checkpoint",
    "load_supernet",
    "make_sampler",
    "recalibrate_bn",
    "resize_input",
    "save_checkpoint",
    "supported_spaces",
    "train_supernet",
]
