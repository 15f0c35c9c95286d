"""The study's model family and data: scikit-learn digits with a fixed train/test split, and plain CNNs
whose last conv is the head flatmon measures (conv -> ReLU -> GAP -> Linear)."""
import numpy as np
import torch
import torch.nn as nn

TRAIN_SIZE = 1000
SPLIT_SEED = 0


def load_split(train_size=TRAIN_SIZE, split_seed=SPLIT_SEED):
    """(x_train, y_train_clean, x_test, y_test): float32 [N,1,8,8] in [0,1], int64 labels; one fixed
    permutation of the 1797 images, the first `train_size` for training and the rest (797) for test."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    order = np.random.RandomState(split_seed).permutation(len(y))
    tr, te = order[:train_size], order[train_size:]
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]), torch.from_numpy(y[te]))


def noisy_labels(y, rate, seed):
    """A copy of `y` where a fraction `rate` (exactly round(rate*N) samples, chosen by `seed`) gets a
    different, uniformly drawn class. Returns (labels, flipped mask)."""
    y = y.clone()
    n = len(y)
    flip = np.zeros(n, dtype=bool)
    k = int(round(rate * n))
    if k:
        rng = np.random.RandomState(10_000 + seed)
        idx = rng.choice(n, k, replace=False)
        flip[idx] = True
        y[idx] = torch.from_numpy((y[idx].numpy() + rng.randint(1, 10, k)) % 10)
    return y, torch.from_numpy(flip)


def study_cnn(width, depth, head_factor=2):
    """`depth` conv(3x3, pad 1) -> ReLU layers of `width` channels on the 8x8 input, then the monitored
    conv (width -> head_factor*width, 3x3, pad 1, stride 2: 4x4 output) -> ReLU -> GAP -> Linear(., 10)."""
    layers, cin = [], 1
    for _ in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
        cin = width
    head = head_factor * width
    layers += [nn.Conv2d(cin, head, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(head, 10)]
    return nn.Sequential(*layers)


def monitored(model):
    """(monitored conv, classifier) of study_cnn."""
    return model[-5], model[-1]
