"""Experiment 43's screens (BENCHMARKS.md, issue 14): the synthesis network's conv weights quantised with one
step per output channel (`rows`) or one step a tensor (`scalar`) in place of row x column steps, then
tools/pyramid_sweep.py's small-cut screen.

    python bench/patches/exp43_step_screens.py NAME SEED [more sweep arguments]

NAME: base, rows, scalar; one JSON line a point on stdout.
"""

import sys

import mvcodec.bitstream  # noqa: F401  (import order)
import mvcodec.compress.coding as coding
import mvcodec.compress.qat as qat
from mvcodec.bitstream.tensor import STEP_PER_AXIS, STEP_SCALAR
from mvcodec.model.base import Role

name, seed, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
original = coding.plan_for


def plan_with(step_mode):
    def plan_for(spec):
        plan = original(spec)
        if spec.role is Role.CONV_WEIGHT:
            return coding.CodingPlan(step_mode, 0, plan.model_mode, plan.model_axis)
        return plan

    return plan_for


patches = {"base": None, "rows": plan_with(STEP_PER_AXIS), "scalar": plan_with(STEP_SCALAR)}
if patches[name] is not None:
    coding.plan_for = qat.plan_for = patches[name]
sys.argv = ["pyramid_sweep", "/tmp/cut160", "--fps", "6", "-f", "8", "-q", "0,2,4", "--flow-level", "4"]
sys.argv += ["--price-frames", "--epochs", "7", "--qat-epochs", "63", "--seed", seed, *extra]
sys.path.insert(0, "tools")
import pyramid_sweep  # noqa: E402

pyramid_sweep.main()
