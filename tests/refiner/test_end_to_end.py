"""The refiner end to end on real images: API, CLI and both pipelines with a real (untrained) compact net."""

import cv2
import numpy as np
import pytest
import torch

from app.main import main
from app.core.images import read_image_rgb
from app.refiner.api import RefineOptions
from app.refiner.pipeline import Guidance
from tests.shared_data import DATA

ECSSD = DATA / "ecssd"


@pytest.fixture(scope="module")
def example():
    if not ECSSD.is_dir():
        pytest.skip(f"real data not found at {ECSSD}")
    image = read_image_rgb(ECSSD / "images" / "0001.jpg")
    gt = cv2.imread(str(ECSSD / "masks" / "0001.png"), cv2.IMREAD_GRAYSCALE) >= 128
    coarse = cv2.dilate(gt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return image, gt, coarse


def test_instance_mode_on_a_real_image(random_refiner, example):
    image, _gt, coarse = example
    steps = list(random_refiner.run(image, [coarse], RefineOptions(seed=1)))
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] and steps[-1].final
    final = steps[-1].mask(0)
    assert final.shape == coarse.shape and final.dtype == bool
    assert steps[-1].changed[0] == int((final != coarse).sum())
    again = list(random_refiner.run(image, [coarse], RefineOptions(seed=1)))
    assert np.array_equal(again[-1].mask(0), final)


def test_hr_mode_and_region_on_a_real_image(random_refiner, example):
    image, _gt, coarse = example
    region = np.zeros_like(coarse)
    region[:, : coarse.shape[1] // 2] = True
    steps = list(random_refiner.run(image, [coarse], RefineOptions(mode="hr", max_patches=4), Guidance(region=region)))
    assert [s.stage for s in steps[:5]] == ["global"] * 5 and steps[-1].final
    for s in steps:
        assert np.array_equal(s.mask(0)[~region], coarse[~region])


def test_options_are_validated():
    with pytest.raises(ValueError, match="mode"):
        RefineOptions(mode="fast")
    with pytest.raises(ValueError, match="steps"):
        RefineOptions(mode="hr", steps=1)


def test_cli_refine_image_writes_the_mask_and_every_step(random_weights, example, tmp_path, capsys):
    image, _gt, coarse = example
    cv2.imwrite(str(tmp_path / "coarse.png"), coarse.astype(np.uint8) * 255)
    out = tmp_path / "refined.png"
    code = main(["refine-image", "--image", str(ECSSD / "images" / "0001.jpg"), "--mask", str(tmp_path / "coarse.png"),
                 "--out", str(out), "--weights", str(random_weights), "--device", "cpu", "--save-steps", str(tmp_path / "steps")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "step 6/6" in printed
    refined = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert refined.shape == coarse.shape and set(np.unique(refined)) <= {0, 255}
    assert len(list((tmp_path / "steps").glob("step_*.png"))) == 6


def test_cli_reports_bad_inputs_clearly(random_weights, example, tmp_path, capsys):
    image, _gt, coarse = example
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((10, 10), np.uint8))
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    code = main(["refine-image", "--image", str(ECSSD / "images" / "0001.jpg"), "--mask", str(small), "--out", str(out), "--weights", str(random_weights)])
    err = capsys.readouterr().err
    assert code == 2 and "small.png" in err and "10x10" in err
    assert out.read_bytes() == b"keep me"
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8not a jpeg")
    code = main(["refine-image", "--image", str(tmp_path / "corrupt.jpg"), "--mask", str(small), "--out", str(out), "--weights", str(random_weights)])
    assert code == 2 and "corrupt.jpg" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bogus)
    cv2.imwrite(str(tmp_path / "coarse.png"), coarse.astype(np.uint8) * 255)
    code = main(["refine-image", "--image", str(ECSSD / "images" / "0001.jpg"), "--mask", str(tmp_path / "coarse.png"), "--out", str(out), "--weights", str(bogus)])
    err = capsys.readouterr().err
    assert code == 2 and "bogus.pth" in err
    assert out.read_bytes() == b"keep me"


def test_cli_refine_image_takes_a_label_map_as_its_labels_and_refuses_an_empty_mask(random_weights, example, tmp_path,
                                                                                    capsys):
    from app.services.refine import read_mask

    _image, _gt, coarse = example
    labels = coarse.astype(np.uint8) * 2  # a label map's instance 2
    cv2.imwrite(str(tmp_path / "labels.png"), labels)
    assert np.array_equal(read_mask(tmp_path / "labels.png", coarse.shape), coarse)
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros_like(labels))
    code = main(["refine-image", "--image", str(ECSSD / "images" / "0001.jpg"), "--mask", str(tmp_path / "empty.png"),
                 "--out", str(tmp_path / "o.png"), "--weights", str(random_weights)])
    err = capsys.readouterr().err
    assert code == 2 and "empty.png: the mask is empty" in err and not (tmp_path / "o.png").exists()
