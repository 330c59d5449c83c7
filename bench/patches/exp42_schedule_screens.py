"""Experiment 42's screens (BENCHMARKS.md, issue 14): one optimiser or schedule change patched into the
encoder of commit b71b336, then tools/pyramid_sweep.py's small-cut screen.

    python bench/patches/exp42_schedule_screens.py NAME SEED [more sweep arguments]

NAME: base, beta1_0.95, beta1_0.8, fitflat, minlr05, cos2, latdecay; one JSON line a point on stdout.
"""

import importlib
import math
import sys
from dataclasses import replace
from pathlib import Path

import mvcodec.bitstream  # noqa: F401  (import order)
import mvcodec.train.fit as fit
from mvcodec.model.pyramid_mc import MVPyramidMCArchitecture
from mvcodec.train import optim

name, seed, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
cosine = {"c": 1.0}  # the cosine factor of the current step (latdecay)


def beta1(b1):
    init = optim.RowAdam.__init__

    def patched(self, params, **kw):
        kw["betas"] = (b1, kw["betas"][1])
        init(self, params, **kw)

    optim.RowAdam.__init__ = patched


def fitflat():  # the fit phase without decay (its warm-up kept); QAT's cosine as before
    recipe = importlib.import_module("mvcodec.encoder.recipe")
    orig = recipe.Recipe.phase_config
    recipe.Recipe.phase_config = lambda self, p: (
        replace(orig(self, p), min_lr=1.0) if p.name == "fit" else orig(self, p)
    )


def minlr05():  # every phase's cosine decays to 5% of its learning rate, not 0
    MVPyramidMCArchitecture.train_defaults = {**MVPyramidMCArchitecture.train_defaults, "min_lr": 0.05}


def lr_at(power):  # the cosine factor to a power; it is recorded for latdecay
    def f(step, total, cfg):
        warm = max(1, round(cfg.warmup * total))
        if step < warm:
            cosine["c"] = 1.0
            return cfg.lr * (step + 1) / warm
        c = 0.5 * (1 + math.cos(math.pi * min((step - warm) / max(1, total - warm), 1.0)))
        cosine["c"] = c
        return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * c**power)

    return f


def cos2():  # every group's learning rate decays as the cosine squared: more steps at a low rate
    fit.lr_at = lr_at(2)


def latdecay():  # the latents' (15x) as the cosine squared, the network's as the cosine
    fit.lr_at = lr_at(1)
    step = optim.RowAdam.step

    def patched(self, *a, **kw):
        for g in self.param_groups:
            if g.get("lr_scale") == 15.0:
                g["lr"] *= cosine["c"]
        return step(self, *a, **kw)

    optim.RowAdam.step = patched


patches = {"beta1_0.95": lambda: beta1(0.95), "beta1_0.8": lambda: beta1(0.8), "fitflat": fitflat}
patches |= {"minlr05": minlr05, "cos2": cos2, "latdecay": latdecay, "base": lambda: None}
patches[name]()
fit.RowAdam = optim.RowAdam
sys.argv = ["pyramid_sweep", "/tmp/cut160", "--fps", "6", "-f", "8", "-q", "2,3,4", "--flow-level", "4"]
sys.argv += ["--price-frames", "--epochs", "7", "--qat-epochs", "63", "--seed", seed, *extra]
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
importlib.import_module("pyramid_sweep").main()
