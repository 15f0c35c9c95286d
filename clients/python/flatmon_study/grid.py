"""The hyperparameter grids: full factorials over six hyperparameters (two values each) × seeds."""
import itertools
from dataclasses import asdict, dataclass

HPARAMS = ("width", "depth", "weight_decay", "batch_size", "lr", "label_noise")
# augment: the largest random shift of a training image in pixels (0: none); a hyperparameter of the
# clean-label study (docs/study-protocol.md); constant (0) in the other grids
ALL_HPARAMS = HPARAMS + ("augment",)


@dataclass(frozen=True)
class Config:
    width: int
    depth: int
    weight_decay: float
    batch_size: int
    lr: float
    label_noise: float
    seed: int
    augment: int = 0
    schedule: str = "constant"      # or "cosine": lr · ½(1 + cos(π·epoch/max_epochs)), per epoch

    @property
    def key(self):
        k = "w%d-d%d-wd%g-b%d-lr%g-n%g" % (self.width, self.depth, self.weight_decay, self.batch_size, self.lr,
                                           self.label_noise)
        if self.augment:
            k += "-a%d" % self.augment
        if self.schedule != "constant":
            k += "-" + self.schedule
        return k + "-s%d" % self.seed

    def hparams(self, with_seed=True):
        d = asdict(self)
        if not with_seed:
            d.pop("seed")
        return d


# The full study: 2^6 = 64 configurations × 3 seeds = 192 models (see docs/generalisation.md for why
# these values: they fit the ~40-minute budget on 2 shared cores and still mix fit-everything models that
# generalise differently).
FULL = dict(width=(16, 24), depth=(1, 2), weight_decay=(0.0, 3e-4), batch_size=(32, 128), lr=(0.03, 0.1),
            label_noise=(0.0, 0.1), seeds=(0, 1, 2), max_epochs=300)

# --quick: a 2-minute smoke run of the whole chain (2^2 configurations × 2 seeds = 8 models).
QUICK = dict(width=(32,), depth=(2,), weight_decay=(0.0,), batch_size=(32,), lr=(0.05, 0.1),
             label_noise=(0.0, 0.1), seeds=(0, 1), max_epochs=120)


# The pre-registered clean-label study (docs/study-protocol.md): clean labels, augmentation by random
# shifts, a cosine lr schedule; 2^6 = 64 configurations × 2 seeds = 128 models.
CLEAN = dict(width=(16, 24), depth=(1, 2), weight_decay=(0.0, 5e-4), batch_size=(32, 128), lr=(0.03, 0.1),
             label_noise=(0.0,), augment=(0, 1), seeds=(0, 1), max_epochs=150, schedule="cosine")

# its smoke version (2^2 configurations × 2 seeds = 8 models)
CLEAN_QUICK = dict(width=(16,), depth=(2,), weight_decay=(0.0,), batch_size=(32,), lr=(0.05, 0.1), label_noise=(0.0,),
                   augment=(0, 1), seeds=(0, 1), max_epochs=60, schedule="cosine")


def configs(spec):
    names = [h for h in ALL_HPARAMS if h in spec]
    values = [spec[h] for h in names]
    return [Config(**dict(zip(names, combo)), seed=s, schedule=spec.get("schedule", "constant"))
            for combo in itertools.product(*values) for s in spec["seeds"]]


def varied(spec):
    """The hyperparameters that take more than one value in `spec` (those granulated τ is defined for)."""
    return [h for h in ALL_HPARAMS if len(spec.get(h, (0,))) > 1]
