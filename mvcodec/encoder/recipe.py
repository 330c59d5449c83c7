"""The training recipe of an encode: the fit's TrainConfig, the preset's phases and the compression settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from mvcodec.errors import InputError
from mvcodec.model.registry import DEFAULT, by_name
from mvcodec.presets import DEFAULT_PRESET, PHASE_NAMES, Phase, epoch_scale, phases_for
from mvcodec.train.fit import TrainConfig


@dataclass(frozen=True)
class CompressConfig:
    """Compression settings of the prune and QAT phases."""

    sparsity: float = 0.4
    rate_lambda: float | None = None  # lambda of L = R + lambda * D (R in bits per pixel, D the fit's loss);
    # None: the quality level's (encoder/plan.py)
    step_lr: float = 25.0  # QAT learning rate of the log steps, as a multiple of the fit's

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise InputError(f"--sparsity must be at least 0 and below 1, got {self.sparsity}")
        if self.rate_lambda is not None and not self.rate_lambda > 0:
            raise InputError(f"--lambda must be positive, got {self.rate_lambda}")


@dataclass(frozen=True)
class Recipe:
    """How every segment is trained: the phases in order, each phase's TrainConfig derived from the fit's."""

    train: TrainConfig  # the fit phase's; its epochs are the fit phase's
    phases: tuple[Phase, ...]
    compress: CompressConfig = CompressConfig()
    fixed: frozenset[str] = frozenset()  # the phases whose epochs the command line set (for_segment keeps them)

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if names[:1] != ["fit"] or names != [n for n in PHASE_NAMES if n in names]:
            raise ValueError(f"phases {names}: a recipe runs fit, then optionally prune, then qat, each once")
        fit = self.phases[0]
        if fit.epochs < 1:
            raise InputError(f"--epochs must be 1 or more, got {fit.epochs}")
        if fit.epochs != self.train.epochs:
            object.__setattr__(self, "train", replace(self.train, epochs=fit.epochs))

    def for_segment(self, view_frames: int, cap: float) -> Recipe:
        """The recipe of a segment of view_frames views x frames: the preset's epochs of each phase not in
        `fixed` times presets.epoch_scale (rounded; 1 at a reference segment or longer, or where cap is 1)."""
        scale = epoch_scale(view_frames, cap)
        if scale == 1.0:
            return self
        phases = tuple(p if p.name in self.fixed else replace(p, epochs=round(p.epochs * scale)) for p in self.phases)
        return replace(self, phases=phases)

    def phase(self, name: str) -> Phase | None:
        """The phase of a name, or None where the recipe has none."""
        return next((p for p in self.phases if p.name == name), None)

    def phase_config(self, phase: Phase) -> TrainConfig:
        """The TrainConfig a phase trains with: the fit's, at the phase's epochs and learning rate; the
        phases after the fit start without warm-up, and QAT adds the rate term and the steps' rate."""
        if phase.name == "fit":
            return self.train
        cfg = replace(self.train, epochs=phase.epochs, lr=self.train.lr * phase.lr, warmup=0.0)
        if phase.name == "qat":
            if self.compress.rate_lambda is None:
                raise ValueError("the recipe's lambda is not set (Recipe.with_lambda)")
            cfg = replace(
                cfg, rate_weight=1.0 / self.compress.rate_lambda, step_lr=self.train.lr * self.compress.step_lr
            )
        return cfg

    def record(self) -> dict:
        """The compression settings as the stream's encoder information lists them."""
        out = asdict(self.compress)
        for name in ("prune", "qat"):
            p = self.phase(name)
            out[f"{name}_epochs"] = p.epochs if p else 0
            out[f"{name}_lr"] = p.lr if p else 0.0
        return out

    def with_lambda(self, rate_lambda: float) -> Recipe:
        return replace(self, compress=replace(self.compress, rate_lambda=rate_lambda))


def recipe(
    preset: str = DEFAULT_PRESET,
    *,
    arch: str | None = None,
    epochs: int | None = None,
    prune_epochs: int | None = None,
    qat_epochs: int | None = None,
    sparsity: float | None = None,
    rate_lambda: float | None = None,
    **train: object,
) -> Recipe:
    """A preset's recipe for an architecture (default: the default one's) with the given settings replaced
    (None keeps the preset's, the architecture's or the default); `train` are TrainConfig fields
    (batch_size, lr, seed, precision, ...). InputError on bad values."""
    try:
        a = by_name(arch or DEFAULT)
    except ValueError as e:
        raise InputError(f"--arch: {e}") from None
    try:
        phases = phases_for(preset, {"fit": epochs, "prune": prune_epochs, "qat": qat_epochs}, a.presets)
    except ValueError as e:
        raise InputError(str(e)) from None
    if not any(p.name == "prune" for p in phases):
        given = [o for o, v in (("--prune-epochs", prune_epochs), ("--sparsity", sparsity)) if v is not None]
        if given:
            raise InputError(
                f"{given[0]}: {a.name} has no pruning phase (its presets are fit + QAT); "
                "drop the option, or add --arch mv-mginr for the network that prunes"
            )
    if train.get("motion_weight") is not None and a.train_defaults.get("motion_weight") == 0.0:
        raise InputError(
            f"--no-motion-mask: {a.name} trains without a motion mask (loss {a.train_defaults.get('loss')}); "
            "drop the option, or add --arch mv-mginr for the motion-aware L1 + SSIM loss"
        )
    fields = {**a.train_defaults, **{k: v for k, v in train.items() if v is not None}}
    if fields.get("loss", "l1-ssim") != "l1-ssim":  # the motion mask weighs the L1 + SSIM loss alone
        if train.get("motion_weight") is not None:
            raise InputError(
                f"--no-motion-mask: the loss {fields['loss']} has no motion mask (it weighs only l1-ssim, "
                "mv-mginr's); drop the option"
            )
        fields["motion_weight"] = 0.0  # and the masks are not computed
    tcfg = TrainConfig(phases[0].epochs, **fields)
    sparsity = a.sparsity if sparsity is None else sparsity
    ccfg = CompressConfig(**{k: v for k, v in (("sparsity", sparsity), ("rate_lambda", rate_lambda)) if v is not None})
    given = {"fit": epochs, "prune": prune_epochs, "qat": qat_epochs}
    return Recipe(tcfg, phases, ccfg, frozenset(k for k, v in given.items() if v is not None))
