"""The frozen EfficientNet-Lite0 encoder: strict loading, TF "SAME" geometry, and the real pretrained weights."""
import cv2
import numpy as np
import pytest
import torch

from app.core.package_data import demo_dir
from app.refiner.encoder import (
    FEATURE_CHANNELS,
    EncoderError,
    LiteEncoder,
    SameConv2d,
    build_encoder,
    load_state,
    package_weights_path,
    pretrained_encoder,
)

DEMO = demo_dir()


def _random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in LiteEncoder().state_dict().items()}


def test_features_at_four_strides_from_a_random_state_dict():
    encoder = build_encoder(_random_state(), "random")
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, 96, 80) * 255)
    assert {s: tuple(f.shape) for s, f in features.items()} == {
        s: (2, FEATURE_CHANNELS[s], -(-96 // s), -(-80 // s)) for s in (2, 4, 8, 16)}
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training


@pytest.mark.parametrize("size", [7, 8, 31, 32])
def test_same_padding_gives_ceil_of_input_over_stride(size):
    conv = SameConv2d(1, 1, 5, stride=2, bias=False)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // 2)


def test_same_padding_puts_the_odd_pixel_at_the_end_as_tensorflow_does():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 4, 4)
    out = conv(x)[0, 0]
    # TF SAME on 4 px, k3 s2: no padding before, one after; the first output sums a full 3x3 window.
    assert out[0, 0].item() == 9 and out[1, 1].item() == 4


def test_a_state_dict_of_another_network_is_refused_naming_it():
    state = _random_state()
    state["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(EncoderError, match=r"^other.pth: not EfficientNet-Lite0 weights \(0 missing, 0 unexpected, 1"):
        build_encoder(state, "other.pth")
    del state["_fc.weight"]
    with pytest.raises(EncoderError, match="1 missing"):
        build_encoder(state, "x")


def test_missing_and_corrupt_weight_files_name_the_file(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        load_state(tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match=r"bad.pth: not a readable PyTorch state dict"):
        load_state(bad)


def _demo_rgb(name: str) -> torch.Tensor:
    image = cv2.cvtColor(cv2.imread(str(DEMO / name)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None].float()


def test_the_packaged_weights_are_the_imagenet_ones():
    """The weights the app depends on classify the demo photos as ImageNet says: a cat, an espresso."""
    try:
        package_weights_path()
    except EncoderError as error:
        pytest.skip(str(error))
    encoder = pretrained_encoder()
    with torch.no_grad():
        cat = int(encoder.classify(_demo_rgb("chelsea.png")).argmax())
        coffee = int(encoder.classify(_demo_rgb("coffee.png")).argmax())
    assert 281 <= cat <= 285  # the ImageNet domestic-cat classes
    assert coffee == 967  # espresso
    assert np.isfinite(sum(float(f.abs().sum()) for f in encoder(_demo_rgb("coffee.png")).values()))
