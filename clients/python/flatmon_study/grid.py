"""The hyperparameter grids: full factorials over six hyperparameters (two values each) × seeds."""
import itertools
from dataclasses import asdict, dataclass

HPARAMS = ("width", "depth", "weight_decay", "batch_size", "lr", "label_noise")


@dataclass(frozen=True)
class Config:
    width: int
    depth: int
    weight_decay: float
    batch_size: int
    lr: float
    label_noise: float
    seed: int

    @property
    def key(self):
        return "w%d-d%d-wd%g-b%d-lr%g-n%g-s%d" % (self.width, self.depth, self.weight_decay, self.batch_size,
                                                  self.lr, self.label_noise, self.seed)

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


def configs(spec):
    values = [spec[h] for h in HPARAMS]
    return [Config(*combo, seed=s) for combo in itertools.product(*values) for s in spec["seeds"]]


def varied(spec):
    """The hyperparameters that take more than one value in `spec` (those granulated τ is defined for)."""
    return [h for h in HPARAMS if len(spec[h]) > 1]
