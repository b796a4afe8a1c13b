"""Fine-tuning of a run's winner (DetNAS's last step) and the standalone-training recipe ``nas rank`` shares."""

from nas.finetune.recipe import Recipe
from nas.finetune.training import StandaloneResult, distillation_loss, train_standalone

__all__ = ["Recipe", "StandaloneResult", "distillation_loss", "train_standalone"]
