"""The MNIST MLP: 784-64-64-10 with ReLU; forward returns logits (the softmax is applied by the
cross-entropy loss, fused with its log, or by predict_proba)."""
from engine import nn
from engine.nn import functional as F


class MLP(nn.Module):
    def __init__(self, sizes=(784, 64, 64, 10)):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.flatten(1))

    def predict_proba(self, x):
        return F.softmax(self(x), dim=-1)
