"""Data sets, transforms and loaders for ViT training, built on Pillow and torch (no torchvision).

cfg = DataConfig.from_model_config("vit_tiny_patch4_32", dataset="cifar10", train_crop="pad", in_memory=True)
train = build_dataset(cfg, "train")
loader = create_loader(train, 128, shuffle=True, num_workers=cfg.num_workers, seed=0, drop_last=True)
augment = BatchAugment(cfg, len(train.classes), train=True)
for images, labels in loader:
    x, targets = augment(images.to(device), labels)
"""

from vitkit.data.augment import BatchAugment, color_jitter, normalize, random_erasing
from vitkit.data.autoaugment import rand_augment, trivial_augment
from vitkit.data.config import NORM_PRESETS, DataConfig, RandAugmentSpec, norm_preset
from vitkit.data.datasets import ImageDataset, InMemoryDataset, build_dataset, resolve_source
from vitkit.data.decode import IMG_EXTENSIONS, load_rgb
from vitkit.data.loader import SeededSampler, create_loader, set_epoch
from vitkit.data.mix import mix_batch, smooth_one_hot
from vitkit.data.named import data_roots, resolve_named
from vitkit.data.preprocess import preprocess
from vitkit.data.sources import Source, cifar, csv_list, image_folder

__all__ = [
    "IMG_EXTENSIONS",
    "NORM_PRESETS",
    "BatchAugment",
    "DataConfig",
    "ImageDataset",
    "InMemoryDataset",
    "RandAugmentSpec",
    "SeededSampler",
    "Source",
    "build_dataset",
    "cifar",
    "color_jitter",
    "create_loader",
    "csv_list",
    "data_roots",
    "image_folder",
    "load_rgb",
    "mix_batch",
    "norm_preset",
    "normalize",
    "preprocess",
    "rand_augment",
    "random_erasing",
    "resolve_named",
    "resolve_source",
    "set_epoch",
    "smooth_one_hot",
    "trivial_augment",
]
