"""Device choice and the out-of-memory fallback of the Runner."""
import pytest
import torch

from app.refiner.device import Runner, autocast_dtype, default_batch_size, pick_device


class RunsOutOfMemory(torch.nn.Module):
    """Fault injection: raises CUDA-style out-of-memory above ``limit`` samples unless it sits on the CPU."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit  # no parameters: a meta-device module can then move to the CPU
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        if x.device.type != "cpu" and x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x[:, 3:4] + t.view(-1, 1, 1, 1)


def test_cpu_is_picked_without_accelerators_and_explicit_requests_are_checked():
    if not torch.cuda.is_available():
        assert pick_device(None).type in {"cpu", "mps"}
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    assert pick_device("cpu").type == "cpu" and pick_device(" CPU").type == "cpu"
    for junk in ("gpu0", "cuda:x", "cpu:cpu", "meta", "xpu"):
        with pytest.raises(ValueError, match=f"device '{junk}' is not one of auto, cpu, cuda, cuda:N or mps"):
            pick_device(junk)
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cuda"), "fp16") is torch.float16
    assert default_batch_size(torch.device("cpu"), "compact") >= 1


def test_out_of_memory_halves_the_batch_then_falls_back_to_cpu():
    model = RunsOutOfMemory(limit=2)
    runner = Runner(model, torch.device("meta"), precision="fp32", batch_size=8)
    x, t = torch.zeros(8, 4, 4, 4), torch.arange(8)
    out = runner(x, t)
    assert out.shape == (8, 1, 4, 4) and out.device.type == "meta"
    assert runner.batch_size == 2 and model.batches[:3] == [8, 4, 2]
    assert len(runner.fallbacks) == 2 and "halved" in runner.fallbacks[0]

    tiny = RunsOutOfMemory(limit=0)
    runner = Runner(tiny, torch.device("meta"), precision="fp32", batch_size=2)
    out = runner(torch.ones(3, 4, 4, 4), torch.tensor([0, 1, 2]))
    assert runner.device.type == "cpu" and "falling back to the CPU" in runner.fallbacks[-1]
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([1.0, 2.0, 3.0]))


def test_other_errors_are_not_swallowed():
    class Broken(RunsOutOfMemory):
        def forward(self, x, t):
            raise RuntimeError("shape mismatch")

    runner = Runner(Broken(limit=1), torch.device("meta"), precision="fp32", batch_size=2)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        runner(torch.zeros(2, 4, 4, 4), torch.zeros(2, dtype=torch.long))


def _tiny_unet():
    from dataclasses import replace

    from app.refiner.unet import PRESETS, DenoiseUNet

    torch.manual_seed(0)
    config = replace(PRESETS["compact"], model_channels=8, channel_mult=(1, 2), num_res_blocks=(0, 1),
                     attention_strides=(), time_embed_dim=16, norm_groups=4, num_heads=1)
    return DenoiseUNet(config)


@pytest.mark.slow
def test_compiled_runner_gives_the_eager_logits():
    model = _tiny_unet()
    x, t = torch.randn(2, 4, 32, 32), torch.tensor([1, 5])
    eager = Runner(model, torch.device("cpu"))(x, t)
    runner = Runner(model, torch.device("cpu"), compile=True)
    compiled = runner(x, t)
    assert runner.compile and not runner.fallbacks  # it really compiled (a failure would have fallen back)
    assert torch.allclose(compiled, eager, atol=1e-4)
    with pytest.raises(ValueError, match="timesteps must lie in 0..5"):
        runner(x, torch.tensor([1, 6]))


def test_a_failing_compiler_falls_back_to_the_plain_network(monkeypatch, caplog):
    def broken_compile(module, **kwargs):
        def fail(*args):
            raise RuntimeError("InductorError: no C++ compiler found")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _tiny_unet()
    x, t = torch.randn(1, 4, 32, 32), torch.tensor([3])
    runner = Runner(model, torch.device("cpu"), compile=True)
    out = runner(x, t)
    assert torch.allclose(out, Runner(model, torch.device("cpu"))(x, t))
    assert not runner.compile and "no C++ compiler" in runner.fallbacks[0]
    assert "running it uncompiled" in caplog.text


def test_options_refuse_a_device_or_pad_the_refiner_cannot_use_before_anything_loads():
    from app.refiner.options import RefineOptions

    assert RefineOptions(device="CUDA:1").device == "CUDA:1"  # the case is pick_device's to fold
    for device in ("gpu0", "meta", "xpu", "cpu:3"):
        with pytest.raises(ValueError, match=f"device '{device}' is not one of auto, cpu, cuda, cuda:N or mps"):
            RefineOptions(device=device)
    with pytest.raises(ValueError, match="pad must be 0 or more pixels, got -5"):
        RefineOptions(pad=-5)
