"""Parameters and forward FLOPs of the presets that are not plain ViTs (hybrids, ResNets),
counted once on the meta device and kept here, so `vitkit models` lists them without
importing torch. `tests/test_startup.py` recounts them against the built models."""

from __future__ import annotations

# name: (parameters, forward FLOPs of one image at the preset's size)
COUNTED = {
    "bit_resnet26": (15995176, 4684513280),
    "bit_resnet50": (25557032, 8178368512),
    "resnet18": (11689512, 3628146688),
    "resnet20": (272474, 81626368),
    "resnet32": (466906, 138249472),
    "resnet34": (21797672, 7327522816),
    "resnet50": (25557032, 8178368512),
    "resnet56": (855770, 251495680),
    "vit_base_r50_s16_224": (97890112, 40869666816),
    "vit_base_r50_s16_384": (98950952, 127175294976),
    "vit_cifar_r14_s8_32": (2044778, 69988608),
}
