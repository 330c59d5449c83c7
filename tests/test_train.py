"""Training: motion masks, loss, the fitting loop, checkpoints and resume, mvenc training runs."""

from __future__ import annotations

import json
import os
import signal
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import SAMPLE_FILES, run_tool, train_config

from mvcodec.color import ColorSpec, rgb_to_yuv420
from mvcodec.compress.qat import CompressibleModel
from mvcodec.errors import InputError
from mvcodec.io import MultiViewSource, Planes, VideoFormat, open_source, pix_fmt
from mvcodec.model import MVMGINR, solve_config
from mvcodec.train.fit import (
    Checkpoint,
    FrameStore,
    TrainingData,
    evaluate,
    fit,
    load_model,
    lr_at,
    rate_weight_at,
    read_checkpoint,
)
from mvcodec.train.loss import motion_aware_loss, yuv_mse_loss, yuv_psnr_loss
from mvcodec.train.motion import motion_masks, view_masks


class ArraySource(MultiViewSource):
    """A MultiViewSource over in-memory frames (views x frames of Planes)."""

    def __init__(self, frames: list[list[Planes]], fmt: VideoFormat):
        super().__init__(fmt, [f"v{i}" for i in range(len(frames))], [], len(frames[0]))
        self._frames = frames

    @property
    def num_views(self) -> int:
        return len(self._frames)

    def read(self, view: int, t: int) -> Planes:
        return self._frames[view][t]


def moving_square_source(views=2, frames=3, width=64, height=36, step=4) -> ArraySource:
    """A textured static background with a bright square moving right by `step` pixels per frame."""
    fmt = VideoFormat(width, height, pix_fmt("yuv420p"), Fraction(30))
    yy, xx = np.mgrid[0:height, 0:width]
    background = (90 + 30 * np.sin(xx / 5) * np.cos(yy / 7)).astype(np.uint8)  # smooth static texture
    out = []
    for v in range(views):
        frames_v = []
        for t in range(frames):
            y = background.copy()
            x0 = 8 + step * t + 2 * v
            y[10:22, x0 : x0 + 12] = 230
            u = np.full((height // 2, width // 2), 128 - 10 * v, np.uint8)
            frames_v.append(Planes(y, u, np.full_like(u, 120)))
        out.append(frames_v)
    return ArraySource(out, fmt)


def test_motion_mask_is_higher_where_things_move():
    src = moving_square_source(views=1, frames=4)
    masks = view_masks(src, 0)
    assert masks.shape == (4, 36, 64) and masks.min() >= 0 and masks.max() <= 1
    for t in range(4):
        x0 = 8 + 4 * t
        square = masks[t][12:20, x0 + 2 : x0 + 10]
        far = masks[t][:, 48:]  # static background well away from the square
        assert square.mean() > 0.5 and far.mean() < 0.1 * square.mean()


def test_motion_masks_are_cached(tmp_path):
    src = moving_square_source()
    cache = tmp_path / "m.npz"
    first = motion_masks(src, cache, progress=False)
    assert first.dtype == np.uint8 and first.shape == (2, 3, 36, 64) and cache.exists()
    with np.load(cache, allow_pickle=False) as z:
        z_masks = z["masks"]
    np.testing.assert_array_equal(motion_masks(src, cache, progress=False), z_masks)


def test_loss_weights_l1_by_motion():
    pred, target = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    target[..., :8] = 0.5
    mask = torch.zeros(1, 1, 16, 16)
    base = motion_aware_loss(pred, target, None)
    assert motion_aware_loss(pred, target, mask) == pytest.approx(float(base))
    mask[..., :8] = 1
    assert motion_aware_loss(pred, target, mask) > base
    assert float(motion_aware_loss(target, target, mask)) == pytest.approx(0.0, abs=1e-6)


def test_the_psnr_loss_has_the_gradient_of_the_frames_mean_psnr_yuv_and_the_value_of_the_mse():
    torch.manual_seed(0)
    color, peak = ColorSpec(), 255.0
    planes = (torch.randint(0, 256, (3, 8, 12)), torch.randint(0, 256, (3, 4, 6)), torch.randint(0, 256, (3, 4, 6)))
    pred = torch.rand(3, 3, 8, 12, requires_grad=True)
    loss = yuv_psnr_loss(pred, planes, 8, color)
    mse = yuv_mse_loss(pred, planes, 8, color)
    assert float(loss.detach()) == pytest.approx(float(mse.detach()))

    def mean_psnr_yuv(x):  # as the metric: each frame's (6 PSNR_Y + PSNR_U + PSNR_V) / 8, then the mean
        psnrs = [
            10 * torch.log10(peak**2 / (p - t.float()).square().flatten(1).mean(dim=1))
            for p, t in zip(rgb_to_yuv420(x, 8, color), planes, strict=True)
        ]
        return ((6 * psnrs[0] + psnrs[1] + psnrs[2]) / 8).mean()

    (grad,) = torch.autograd.grad(loss, pred)
    (metric,) = torch.autograd.grad(mean_psnr_yuv(pred), pred)
    # d loss = -MSE * ln(10) / 10 * d PSNR: descending the loss climbs the metric, frames and planes as it weighs them
    torch.testing.assert_close(grad, -float(mse.detach()) * np.log(10) / 10 * metric, rtol=1e-4, atol=1e-9)
    (plain,) = torch.autograd.grad(yuv_mse_loss(pred, planes, 8, color), pred)
    assert not torch.allclose(grad, plain, rtol=0.05)  # not the MSE's: the errors here differ by frame and plane
    (scaled,) = torch.autograd.grad(yuv_psnr_loss(pred, planes, 8, color, scale=3e-2), pred)
    torch.testing.assert_close(scaled, -3e-2 * np.log(10) / 10 * metric, rtol=1e-4, atol=1e-9)  # fit's epoch scale


def test_learning_rate_warms_up_then_decays():
    tcfg = train_config("fast", lr=1e-3, warmup=0.1)
    lrs = [lr_at(s, 100, tcfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-3)
    assert lrs[9] == pytest.approx(1e-3) and lrs[-1] < 1e-5
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_the_rate_weight_warms_up_linearly_when_asked_and_is_whole_otherwise():
    tcfg = train_config("fast", rate_weight=0.5, rate_warmup=0.2)
    weights = [rate_weight_at(s, 100, tcfg) for s in range(100)]
    assert weights[0] == pytest.approx(0.5 / 20) and weights[9] == pytest.approx(0.25)
    assert all(w == 0.5 for w in weights[19:]) and all(a < b for a, b in zip(weights[:19], weights[1:20], strict=True))
    assert {rate_weight_at(s, 100, train_config("fast", rate_weight=0.5)) for s in range(100)} == {0.5}
    with pytest.raises(InputError, match="rate_warmup"):
        train_config("fast", rate_warmup=1.5)
    with pytest.raises(InputError, match="noise_ramp must be above 0 and at most 1, got 0"):
        train_config("fast", noise_ramp=0.0)


def test_presets_set_every_phase_and_configs_check_their_values():
    from mvcodec.encoder.recipe import recipe

    r = recipe("paper", arch="mv-mginr")
    assert [(p.name, p.epochs) for p in r.phases] == [("fit", 300), ("prune", 25), ("qat", 75)]
    assert r.train.epochs == 300 and recipe("fast", qat_epochs=0).phase("qat").epochs == 0
    assert train_config("paper").epochs == 300 and train_config("fast", precision="fp32").precision == "fp32"
    with pytest.raises(InputError, match="--preset: unknown preset 'quick'"):
        train_config("quick")
    with pytest.raises(InputError, match="--precision: unknown precision 'fp16'; use one of bf16, fp32"):
        train_config("fast", precision="fp16")
    with pytest.raises(InputError, match="--batch-size and --checkpoint-every must be 1 or more"):
        train_config("fast", batch_size=0)
    with pytest.raises(InputError, match="--epochs must be 1 or more, got 0"):
        recipe("fast", epochs=0)
    with pytest.raises(InputError, match="--sparsity must be at least 0 and below 1"):
        recipe("fast", arch="mv-mginr", sparsity=1.0)


def _tiny(seed=0):
    src = moving_square_source()
    torch.manual_seed(seed)
    cfg = solve_config(2, 3, 36, 64, 20_000)
    model = CompressibleModel(MVMGINR(cfg), cfg)
    return src, model, TrainingData(FrameStore(src, torch.device("cpu")), motion_masks(src, progress=False), "x")


def test_fitting_lowers_the_loss_and_raises_psnr():
    src, model, data = _tiny()
    before = evaluate(model, data.store)["psnr_y"]
    losses = []
    fit(
        model,
        data,
        train_config("fast", epochs=20),
        progress=False,
        on_epoch=lambda e, loss: losses.append(loss),
    )
    assert losses[-1] < 0.8 * losses[0] and all(b < a for a, b in zip(losses[:-5], losses[5:], strict=False))
    assert evaluate(model, data.store)["psnr_y"] > before + 2


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.slow
def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    tcfg = train_config("fast", epochs=4, checkpoint_every=1, seed=3)
    src, model, data = _tiny(seed=3)
    fit(model, data, tcfg, progress=False)
    uninterrupted = _params(model)

    ckpt = Checkpoint(tmp_path / "run.ckpt")
    src, model, data = _tiny(seed=3)

    def ctrl_c(epoch, loss):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: deferred until the step in flight is done

    with pytest.raises(KeyboardInterrupt):
        fit(model, data, tcfg, checkpoint=ckpt, progress=False, on_epoch=ctrl_c)
    meta, _ = read_checkpoint(ckpt.path)
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 1)  # stopped inside epoch 3, after one step

    src, model, data = _tiny(seed=99)  # a different initialisation: everything comes from the checkpoint
    fit(model, data, tcfg, checkpoint=ckpt, progress=False)
    for a, b in zip(uninterrupted, _params(model), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(_params(load_model(ckpt.path))[0], uninterrupted[0], rtol=0, atol=0)


def test_same_seed_gives_the_same_model_on_cpu():
    runs = []
    for _ in range(2):
        src, model, data = _tiny(seed=5)
        fit(model, data, train_config("fast", epochs=2, seed=5), progress=False)
        runs.append(_params(model))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_mvenc_trains_reports_quality_and_refuses_to_overwrite_a_checkpoint(tmp_path):
    out = tmp_path / "o.mvinr"
    args = [
        *SAMPLE_FILES[:2],
        out,
        "-f",
        "3",
        "--arch",
        "mv-mginr",
        "--params",
        "40k",
        "--epochs",
        "2",
        "--no-progress",
        "--keep-checkpoints",
    ]
    r = run_tool("mvenc", *args, "--stats", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert "PSNR-YUV" in r.stdout and "mean" in r.stdout and "time grid" in r.stdout
    stats = json.loads((tmp_path / "s.json").read_text())
    assert len(stats["per_view"]) == 2 and stats["psnr_y"] > 10 and abs(stats["params"] - 40_000) <= 2000
    assert (tmp_path / "o.mvinr.ckpt").exists() and out.exists()
    assert run_tool("mvenc", *args).returncode == 0  # a finished checkpoint is an output: overwritten
    # an interrupted one is not: make one by stopping after epoch 1 of 2
    meta, arrays = read_checkpoint(tmp_path / "o.mvinr.ckpt")
    meta["epoch"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(tmp_path / "o.mvinr.ckpt", "wb") as f:
        np.savez(f, **arrays)
    again = run_tool("mvenc", *args)
    assert again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    resumed = run_tool("mvenc", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "training: resuming at epoch 2 of 2, step 1 (from o.mvinr.ckpt)" in resumed.stdout
    assert read_checkpoint(tmp_path / "o.mvinr.ckpt")[0]["epoch"] == 2


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_other_input(tmp_path):
    out = tmp_path / "o.mvinr"
    common = ["-f", "3", "--params", "40k", "--epochs", "1", "--no-progress", "--keep-checkpoints"]
    assert run_tool("mvenc", *SAMPLE_FILES[:2], out, *common).returncode == 0
    r = run_tool("mvenc", *SAMPLE_FILES[2:], out, *common, "--resume")
    assert r.returncode == 2 and "other input" in r.stderr


def test_recipes_run_known_phases_in_order_and_old_checkpoints_get_one_line(tmp_path):
    from dataclasses import replace

    from mvcodec.encoder.recipe import recipe
    from mvcodec.presets import Phase

    r = recipe("fast", arch="mv-mginr")
    for phases in [r.phases[1:], (*r.phases, Phase("qat", 1)), (r.phases[0], r.phases[2], r.phases[1])]:
        with pytest.raises(ValueError, match="a recipe runs fit, then optionally prune, then qat"):
            replace(r, phases=phases)
    assert [p.name for p in replace(r, phases=(r.phases[0], r.phases[2])).phases] == ["fit", "qat"]
    with pytest.raises(InputError, match="--prune-epochs must be 0 or more, got -1"):
        recipe("fast", prune_epochs=-1)
    for option, given in (("--prune-epochs", {"prune_epochs": 2}), ("--sparsity", {"sparsity": 0.3})):
        with pytest.raises(InputError, match=f"{option}: mv-pyramid-mc has no pruning phase"):
            recipe("fast", arch="mv-pyramid-mc", **given)
    with pytest.raises(InputError, match="--no-motion-mask: mv-pyramid trains without a motion mask"):
        recipe("fast", arch="mv-pyramid", motion_weight=0.0)
    with pytest.raises(InputError, match="--no-motion-mask: the loss mse-yuv has no motion mask"):
        recipe("fast", arch="mv-mginr", loss="mse-yuv", motion_weight=0.0)
    assert recipe("fast", arch="mv-mginr", loss="psnr-yuv").train.motion_weight == 0.0  # no masks computed
    assert recipe("fast", arch="mv-mginr").train.motion_weight == 1.0
    meta = np.frombuffer(json.dumps({"version": 1}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", meta=meta)
    with pytest.raises(InputError, match="a version 1 checkpoint .*: delete it to start afresh"):
        read_checkpoint(tmp_path / "old.npz")


def test_checkpoints_load_without_pickle(tmp_path):
    src = open_source(SAMPLE_FILES[:1], frames=2)
    torch.manual_seed(0)
    cfg = solve_config(1, 2, 96, 160, 40_000)
    store = FrameStore(src, torch.device("cpu"))
    fit(
        CompressibleModel(MVMGINR(cfg), cfg),
        TrainingData(store),
        train_config("fast", epochs=1, motion_weight=0.0),
        checkpoint=Checkpoint(tmp_path / "c.ckpt"),
        progress=False,
    )
    with np.load(tmp_path / "c.ckpt", allow_pickle=False) as z:  # would raise if anything were pickled
        assert all(z[k].dtype != object for k in z.files)


@pytest.mark.slow
def test_ctrl_c_during_mvenc_keeps_a_checkpoint_that_resume_finishes(tmp_path):
    import subprocess

    from helpers import tool

    out = tmp_path / "o.mvinr"
    common = [*map(str, SAMPLE_FILES[:2]), str(out), "-f", "3", "--params", "40k", "--checkpoint-every", "1000"]
    proc = subprocess.Popen(
        [tool("mvenc"), *common, "--epochs", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = ""
    while not line.startswith("training "):  # wait for the first line of the training progress
        line = proc.stderr.readline()
        assert line, "mvenc ended before training"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    meta, _ = read_checkpoint(tmp_path / "o.mvinr.ckpt")
    assert 0 < meta["epoch"] * 3 + meta["step_in_epoch"] and meta["epoch"] < 40
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    common.append("--no-progress")
    other = run_tool("mvenc", *common, "--epochs", "41", "--resume")
    assert other.returncode == 2 and "other training options" in other.stderr
    done = run_tool("mvenc", *common, "--epochs", "40", "--resume", "--stats", tmp_path / "s.json")
    assert done.returncode == 0, done.stderr
    assert out.exists() and not (tmp_path / "o.mvinr.ckpt").exists()  # written: the checkpoint is not needed
    assert json.loads((tmp_path / "s.json").read_text())["bytes"] == out.stat().st_size


@pytest.mark.parametrize("arch", ["mv-pyramid", "mv-pyramid-mc"])
def test_an_mv_pyramid_qat_resumed_equals_an_uninterrupted_one(tmp_path, arch):
    """The row-lazy optimiser's state and the per-row statistics of the latents' Gaussians are checkpointed
    (MV-Pyramid-MC, the default architecture: with its chain, its motion and its own training defaults)."""
    from mvcodec.model import by_name
    from mvcodec.model.pyramid import PyramidConfig
    from mvcodec.model.pyramid_mc import PyramidMCConfig

    def tiny():
        torch.manual_seed(4)
        cfg = PyramidConfig(2, 3, 36, 64, levels=3, hidden=8)
        if arch == "mv-pyramid-mc":
            cfg = PyramidMCConfig.of(cfg, flow_level=2)
        model = CompressibleModel(by_name(arch).build(cfg), cfg, quantise=True)
        if arch == "mv-pyramid-mc":
            torch.nn.init.normal_(model.base.flows, 0, 4)
        return model, TrainingData(FrameStore(moving_square_source(), torch.device("cpu")), None, "x")

    model = resumed_equals_uninterrupted(tiny, by_name(arch), tmp_path)
    assert any(k.startswith("rowstats_") for k in model.state_dict())


def resumed_equals_uninterrupted(tiny, arch, tmp_path) -> CompressibleModel:
    """Train tiny()'s model (its data alongside) for 4 epochs of QAT with the architecture's training defaults,
    uninterrupted, then interrupted after epoch 2 and resumed from the checkpoint; assert that both end with
    the same state, bit for bit, and return the resumed model."""
    from dataclasses import replace

    defaults = {k: v for k, v in arch.train_defaults.items() if k != "lr"}
    tcfg = replace(train_config("fast", epochs=4, checkpoint_every=1, seed=3), rate_weight=1e-2, **defaults)
    model, data = tiny()
    fit(model, data, tcfg, progress=False)
    uninterrupted = [t.clone() for t in model.state_dict().values()]
    ckpt = Checkpoint(tmp_path / "run.ckpt")
    model, data = tiny()

    def stop(epoch, loss):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(model, data, tcfg, checkpoint=ckpt, progress=False, on_epoch=stop)
    model, data = tiny()
    fit(model, data, tcfg, checkpoint=ckpt, progress=False)
    for a, b in zip(uninterrupted, model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    return model


def test_adams_beta2_is_a_checked_option_that_the_default_architecture_sets(monkeypatch):
    from dataclasses import replace

    from mvcodec.encoder.recipe import recipe
    from mvcodec.train import fit as fit_module

    with pytest.raises(InputError, match="adam_beta2"):
        train_config(adam_beta2=1.0)
    assert recipe("medium").train.adam_beta2 == 0.99  # mv-pyramid-mc's (BENCHMARKS.md, experiment 41)
    assert recipe("medium", arch="mv-mginr").train.adam_beta2 == 0.999
    seen = []

    class Spy(fit_module.RowAdam):
        def __init__(self, params, **kw):
            seen.append(kw["betas"])
            super().__init__(params, **kw)

    monkeypatch.setattr(fit_module, "RowAdam", Spy)
    source = moving_square_source()
    cfg = solve_config(2, 3, 36, 64, 12_000)
    model = CompressibleModel(MVMGINR(cfg), cfg)
    data = TrainingData(FrameStore(source, torch.device("cpu")))
    fit(model, data, replace(train_config(epochs=1), adam_beta2=0.9), progress=False)
    assert seen == [(0.9, 0.9)]
