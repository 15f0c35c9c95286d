"""scikit-learn's bundled 8x8 digits and two small CNNs with heads flatmon measures (used by the demo
trainer and the end-to-end tests)."""
import numpy as np
import torch
import torch.nn as nn


def load_digits(train_size=1000, eval_size=500, label_noise=0.0, seed=0):
    """(x_train, y_train, x_eval, y_eval) as float32 [N,1,8,8] in [0,1] and int64 labels. A fraction
    `label_noise` of the training labels is replaced by a different random class; eval labels are clean."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(y))
    if train_size + eval_size > len(y):
        raise ValueError("digits has only %d samples" % len(y))
    tr, ev = order[:train_size], order[len(y) - eval_size:]
    ytr = y[tr].copy()
    if label_noise > 0:
        flip = rng.rand(len(ytr)) < label_noise
        ytr[flip] = (ytr[flip] + rng.randint(1, 10, flip.sum())) % 10
    return (torch.from_numpy(x[tr]), torch.from_numpy(ytr), torch.from_numpy(x[ev]), torch.from_numpy(y[ev]))


def plain_cnn(width=16, head_width=16, head_in=None, activation=nn.ReLU, trunk_activation=nn.ReLU, dropout=0.0):
    """conv -> act -> conv -> act -> [monitored conv] -> activation -> GAP -> flatten -> [dropout] -> Linear,
    as one nn.Sequential. The monitored conv is model[4], the classifier model[-1]."""
    head_in = head_in or width
    layers = [nn.Conv2d(1, width, 3, padding=1), trunk_activation(),
              nn.Conv2d(width, head_in, 3, padding=1), trunk_activation(),
              nn.Conv2d(head_in, head_width, 3, padding=1, stride=2), activation(),
              nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(head_width, 10))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, + shortcut, ReLU (one shared in-place ReLU)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetDigits(nn.Module):
    """A torchvision-style ResNet for 8x8 inputs: stem, two BasicBlocks, avgpool, fc. The monitored conv
    is layer2[-1].conv2 (its BN shift and the shortcut make flatmon need the pre-activation Z)."""

    def __init__(self, width=8, head_width=12):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, head_width, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(head_width, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def monitored(model):
    """(conv_layer, classifier) of the models above."""
    if isinstance(model, ResNetDigits):
        return model.layer2[-1].conv2, model.fc
    return model[4], model[-1]
