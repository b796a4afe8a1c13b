"""Data sets in memory, split and normalised: the readers (:mod:`.formats`) and the bundle (:mod:`.datasets`)."""

from nas.core.data.datasets import DATASETS, IMAGE_EXTENSIONS, DataBundle, dataset_facts, load_dataset

__all__ = ["DATASETS", "IMAGE_EXTENSIONS", "DataBundle", "dataset_facts", "load_dataset"]
