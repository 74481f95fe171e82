"""Instance and HR pipelines with oracle / identity networks: geometry, guidance, seeding, stopping."""
import numpy as np
import pytest
import torch

from app.refiner.pipeline import MEAN, STD, Guidance, HRSettings, InstanceSettings, refine_hr, refine_instances


def _identity(x, t):
    """Returns the current mask as confident logits: refinement must give back its input."""
    return (x[:, 3:4] * 2 - 1) * 20.0


def _oracle(x, t):
    """The image encodes the ground truth (white object on black): predicts it from the red channel."""
    red = x[:, 0:1] * STD[0, 0] + MEAN[0, 0]
    return (red > 127).float() * 40.0 - 20.0


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _image_of(mask):
    return np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)


def _final(steps):
    out = list(steps)
    assert out[-1].final
    return out


@pytest.mark.parametrize("keep_native", [False, True])
def test_identity_network_gives_back_coarse_mask_to_the_pixel(keep_native):
    # Box of exactly 256 (216 px object + 2 x 20 px pad): crop, resize and paste are exact.
    shape = (400, 500)
    coarse = np.zeros(shape, bool)
    coarse[50:266, 100:316] = _disk((216, 216), (107.5, 107.5), 108) | (np.arange(216)[None, :] < 30)
    steps = _final(refine_instances(_identity, _image_of(coarse), [coarse], InstanceSettings(keep_native=keep_native)))
    assert len(steps) == 6
    assert np.array_equal(steps[-1].mask(0), coarse)
    assert steps[-1].results[0].box == (80, 30, 336, 286)
    assert steps[-1].changed == [0]


def test_identity_network_has_no_half_pixel_shift_when_scaling():
    shape = (700, 900)
    coarse = _disk(shape, (350.0, 420.0), 230)
    final = _final(refine_instances(_identity, _image_of(coarse), [coarse], InstanceSettings(keep_native=False)))[-1].mask(0)
    inter, union = (final & coarse).sum(), (final | coarse).sum()
    assert inter / union > 0.99
    ys, xs = np.nonzero(final)
    assert abs(ys.mean() - 350.0) < 0.25 and abs(xs.mean() - 420.0) < 0.25


@pytest.mark.parametrize("pipeline", ["instance", "hr"])
def test_keep_native_changes_only_near_what_the_network_changed(pipeline):
    # A large object (box ~2.5x the grid) whose edge has 1-px teeth no 256 grid can hold, and a network
    # that agrees with its input except for a block of grid cells it adds in the top-left corner.
    shape = (720, 760)
    coarse = np.zeros(shape, bool)
    coarse[120:620, 140:640] = True
    coarse[116:120, 140:640:2] = True  # teeth along the top edge

    def adds_corner(x, t):
        logits = _identity(x, t).clone()
        logits[..., :24, :24] = 20.0
        return logits

    def run(keep_native):
        if pipeline == "hr":
            steps = refine_hr(adds_corner, _image_of(coarse), coarse, HRSettings(keep_native=keep_native, max_patches=0))
        else:
            steps = refine_instances(adds_corner, _image_of(coarse), [coarse], InstanceSettings(keep_native=keep_native))
        return _final(steps)[-1].mask(0)

    native, official = run(True), run(False)
    far = np.ones(shape, bool)
    far[:260, :260] = False  # the corner block and its neighbourhood, whatever the grid's scale
    assert np.array_equal(native[far], coarse[far])
    block = (slice(3, 60), slice(3, 60)) if pipeline == "hr" else (slice(98, 112), slice(122, 168))  # box from (120, 96)
    assert native[block].all() and not coarse[block].all()  # the change itself is applied
    assert (official[far] != coarse[far]).sum() > 500  # the official paste loses the teeth everywhere


def test_oracle_network_recovers_ground_truth_from_shifted_coarse():
    shape = (300, 360)
    gt = _disk(shape, (150, 180), 80)
    coarse = _disk(shape, (158, 170), 78)
    steps = _final(refine_instances(_oracle, _image_of(gt), [coarse], InstanceSettings(seed=3)))
    final = steps[-1].mask(0)
    iou_before = (gt & coarse).sum() / (gt | coarse).sum()
    iou_after = (gt & final).sum() / (gt | final).sum()
    assert iou_before < 0.85 and iou_after > 0.97
    assert steps[-1].changed[0] == int((final != coarse).sum())
    conf = steps[-1].confidence(0)
    assert conf.shape == shape and conf.max() <= 1.0 and conf[150, 180] > 0.99


def test_region_and_constraints_hold_at_every_step():
    shape = (300, 360)
    gt = _disk(shape, (150, 180), 80)
    coarse = _disk(shape, (158, 170), 78)
    region = np.zeros(shape, bool)
    region[:, 180:] = True  # only the right half may change
    fg = np.zeros(shape, bool)
    fg[60:70, 250:260] = True  # must be foreground although the oracle says background
    bg = np.zeros(shape, bool)
    bg[140:160, 230:240] = True  # must be background although inside the object
    guide = Guidance(region=region, foreground=fg, background=bg)
    steps = _final(refine_instances(_oracle, _image_of(gt), [coarse], guidance=guide))
    for step in steps:
        m = step.mask(0)
        assert np.array_equal(m[~region], coarse[~region])
        assert m[fg].all() and not m[bg].any()
    final = steps[-1].mask(0)
    right = region & ~fg & ~bg
    assert (final[right] == gt[right]).mean() > 0.99


def test_foreground_constraint_grows_the_crop_box():
    shape = (300, 400)
    coarse = _disk(shape, (150, 100), 40)
    fg = np.zeros(shape, bool)
    fg[140:160, 300:320] = True
    step = _final(refine_instances(_identity, _image_of(coarse), [coarse], guidance=Guidance(foreground=fg)))[-1]
    assert step.results[0].box[2] >= 320
    assert step.mask(0)[fg].all()


def test_seeded_runs_repeat_exactly():
    shape = (200, 240)
    gt = _disk(shape, (100, 120), 60)
    coarse = _disk(shape, (106, 112), 58)

    def unsure(x, t):
        return _oracle(x, t) * 0.05

    def run(seed):
        return [s.mask(0) for s in refine_instances(unsure, _image_of(gt), [coarse], InstanceSettings(seed=seed))]

    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a[:-1], c[:-1]))


def test_batches_small_masks_and_indices():
    shape = (200, 300)
    masks = [_disk(shape, (100, 60 + 40 * k), 15) for k in range(5)] + [_disk(shape, (20, 20), 5)]
    steps = _final(refine_instances(_identity, _image_of(masks[0]), masks, InstanceSettings(batch_size=2)))
    assert len(steps) == 3 * 6 and steps[-1].total == 18
    first = steps[0]
    assert 5 in first.indices and first.results[first.indices.index(5)].skipped
    finals = {i: r for s in steps if s.final for i, r in zip(s.indices, s.results)}
    assert sorted(finals) == [0, 1, 2, 3, 4]
    for i, r in finals.items():
        assert np.array_equal(r.full_mask(shape), masks[i])


def test_stopping_early_leaves_inputs_untouched():
    shape = (200, 240)
    gt = _disk(shape, (100, 120), 60)
    coarse = _disk(shape, (106, 112), 58)
    before = coarse.copy()
    gen = refine_instances(_oracle, _image_of(gt), [coarse])
    first = next(gen)
    gen.close()
    assert first.step == 1 and not first.final
    assert np.array_equal(coarse, before)


def test_bad_inputs_are_reported():
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match="mask 0 has shape"):
        next(refine_instances(_identity, img, [np.zeros((50, 61), bool)]))
    with pytest.raises(ValueError, match="uint8"):
        next(refine_instances(_identity, img.astype(np.float32), [np.zeros((50, 60), bool)]))
    with pytest.raises(ValueError, match="region mask"):
        next(refine_instances(_identity, img, [np.zeros((50, 60), bool)], guidance=Guidance(region=np.ones((5, 5), bool))))


def test_hr_identity_keeps_mask_and_oracle_fixes_boundary():
    shape = (600, 800)
    gt = _disk(shape, (300, 400), 200)
    coarse = _disk(shape, (306, 392), 196)
    calls = []

    def counting_identity(x, t):
        calls.append((x.shape[0], t[0].item()))
        return _identity(x, t)

    steps = _final(refine_hr(counting_identity, _image_of(gt), coarse, HRSettings(batch_size=4)))
    assert [s.stage for s in steps[:5]] == ["global"] * 5
    assert steps[-1].stage == "local"
    assert [t for _, t in calls[:5]] == [5, 4, 3, 2, 1] and all(t == 0 for _, t in calls[5:])
    final = steps[-1].mask(0)
    assert (final != coarse).sum() / coarse.sum() < 0.01

    oracle_steps = _final(refine_hr(_oracle, _image_of(gt), coarse))
    final = oracle_steps[-1].mask(0)
    assert (final & gt).sum() / (final | gt).sum() > 0.98
    assert all(s.total == oracle_steps[-1].total for s in oracle_steps[5:])


def test_hr_patches_are_capped_and_small_images_work():
    shape = (180, 200)  # smaller than a 256 patch
    gt = _disk(shape, (90, 100), 50)
    coarse = _disk(shape, (94, 96), 48)
    steps = _final(refine_hr(_oracle, _image_of(gt), coarse, HRSettings(max_patches=1)))
    assert sum(s.stage == "local" for s in steps) == 1
    final = steps[-1].mask(0)
    assert (final & gt).sum() / (final | gt).sum() > 0.95


def test_hr_region_holds():
    shape = (400, 400)
    gt = _disk(shape, (200, 200), 120)
    coarse = _disk(shape, (210, 190), 115)
    region = np.zeros(shape, bool)
    region[:200] = True
    for step in refine_hr(_oracle, _image_of(gt), coarse, guidance=Guidance(region=region)):
        assert np.array_equal(step.mask(0)[~region], coarse[~region])


def test_empty_mask_passes_through():
    img = np.zeros((100, 100, 3), np.uint8)
    empty = np.zeros((100, 100), bool)
    steps = list(refine_instances(_identity, img, [empty]))
    assert len(steps) == 1 and steps[0].results[0].skipped
    steps = list(refine_hr(_identity, img, empty))
    assert len(steps) == 1 and not steps[0].mask(0).any()


def test_stochastic_run_uses_torch_generator_not_global_rng():
    shape = (200, 240)
    gt = _disk(shape, (100, 120), 60)
    coarse = _disk(shape, (106, 112), 58)
    torch.manual_seed(0)
    a = [s.mask(0) for s in refine_instances(lambda x, t: _oracle(x, t) * 0.05, _image_of(gt), [coarse])]
    torch.manual_seed(123)
    b = [s.mask(0) for s in refine_instances(lambda x, t: _oracle(x, t) * 0.05, _image_of(gt), [coarse])]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_each_patch_counts_the_reverse_steps_behind_it():
    """What provenance records: one per reverse step the mask went through, none for a pass-through."""
    shape = (300, 300)
    gt = _disk(shape, (150, 150), 80)
    tiny = np.zeros(shape, bool)
    tiny[5, 5] = True
    steps = list(refine_instances(_oracle, _image_of(gt), [_disk(shape, (155, 145), 78), tiny],
                                  InstanceSettings(steps=4)))
    counts = [[(i, r.reverse_steps) for i, r in zip(s.indices, s.results)] for s in steps]
    assert counts == [[(0, 1), (1, 0)], [(0, 2)], [(0, 3)], [(0, 4)]]

    def unsure_at_edges(x, t):  # the oracle, blurred: unsure along the boundary, so HR takes local patches
        return torch.nn.functional.avg_pool2d(_oracle(x, t), 15, stride=1, padding=7)

    hr = _final(refine_hr(unsure_at_edges, _image_of(gt), _disk(shape, (155, 145), 78), HRSettings(batch_size=2)))
    local = [s.results[0].reverse_steps for s in hr if s.stage == "local"]
    assert [s.results[0].reverse_steps for s in hr if s.stage == "global"] == [1, 2, 3, 4, 5]
    assert local and set(local) == {6}  # 6, not 5: local patches ran
    confident = _final(refine_hr(_identity, _image_of(gt), gt))  # nothing uncertain: no local patches
    assert [s.results[0].reverse_steps for s in confident] == [1, 2, 3, 4, 5, 5]


@pytest.mark.parametrize("box", [(301, 433), (32, 48)])
def test_pasting_strip_by_strip_is_exactly_the_official_paste_of_each_map(box, monkeypatch):
    """Maps of a step are pasted together, a few rows at a time: each must equal mmdet's ``_do_paste_mask`` on its
    own (half-pixel centres, zero padding), to the bit, or a tie at 0.5 would flip pixels of the pasted mask."""
    import torch.nn.functional as F

    from app.refiner import pipeline

    monkeypatch.setattr(pipeline, "STRIP_VALUES", 500)  # many strips (a row each on the large box), one short
    generator = torch.Generator().manual_seed(0)
    maps = torch.cat([(torch.rand(1, 1, 64, 96, generator=generator) > 0.5).float(),
                      torch.rand(1, 1, 64, 96, generator=generator)], dim=1)
    h, w = box
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    for mode, window in (("bilinear", None), ("bilinear", (slice(3, h - 5), slice(7, w - 2))), ("nearest", None)):
        rows, cols = window or (slice(0, h), slice(0, w))
        pasted = np.full((2, rows.stop - rows.start, cols.stop - cols.start), np.nan, np.float32)
        strips = list(pipeline._paste_strips(maps, (h, w), mode, window))
        for part, values in strips:
            assert values.dtype == np.float32
            pasted[:, part] = values
        assert len(strips) > (mode == "bilinear")
        for c in range(2):
            if mode == "nearest":
                official = F.interpolate(maps[:, c : c + 1], size=(h, w), mode="nearest")[0, 0].numpy()
            else:
                official = F.grid_sample(maps[:, c : c + 1], grid, mode="bilinear", align_corners=False)[0, 0].numpy()
            assert np.array_equal(pasted[c], official[rows, cols])
        if box == (32, 48) and mode == "bilinear":
            assert (pasted[0] == 0.5).any()  # halving the grid puts pixel centres halfway: the ties occur


def test_a_region_pastes_only_its_part_of_the_box_and_the_mask_is_as_if_all_were_pasted():
    """A click's neighbourhood in a large object: only the region's rectangle is sampled. The mask equals the whole
    paste clamped to the region; outside the rectangle the coarse mask is kept and reported sure (confidence 1)."""
    from app.refiner.pipeline import patch_result

    generator = torch.Generator().manual_seed(1)
    grid_mask = (torch.rand(1, 1, 32, 32, generator=generator) > 0.5).float()
    conf = torch.rand(1, 1, 32, 32, generator=generator)
    coarse = np.zeros((200, 300), bool)
    coarse[40:160, 60:240] = True
    box = (50, 30, 250, 170)
    region = np.zeros_like(coarse)
    region[60:90, 100:150] = True
    region[100, 200] = True
    whole = patch_result(grid_mask, conf, coarse, box, Guidance(), 3)
    part = patch_result(grid_mask, conf, coarse, box, Guidance(region=region), 3)
    crop = (slice(30, 170), slice(50, 250))
    assert np.array_equal(part.mask, np.where(region[crop], whole.mask, coarse[crop]))
    rows, cols = Guidance(region=region).window(box)
    assert (rows, cols) == (slice(30, 71), slice(50, 151))
    assert np.array_equal(part.confidence[rows, cols], whole.confidence[rows, cols])
    outside = np.ones(part.confidence.shape, bool)
    outside[rows, cols] = False
    assert (part.confidence[outside] == 1.0).all() and part.changed == int((part.mask != coarse[crop]).sum()) > 0
    missed = np.zeros_like(coarse)
    missed[0:10, 0:10] = True
    assert Guidance(region=missed).window(box) is None
    away = patch_result(grid_mask, conf, coarse, box, Guidance(region=missed), 3)
    assert np.array_equal(away.mask, coarse[crop]) and away.changed == 0
