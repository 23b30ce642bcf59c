"""The MNIST CNN: Conv(32, 3×3)-ReLU-MaxPool(2)-Conv(64, 3×3)-ReLU-MaxPool(2)-Flatten-
Linear(64)-ReLU-Linear(10). Shapes for a 28×28 input: 32×26×26 -> 32×13×13 -> 64×11×11 -> 64×5×5."""
from engine import nn


class CNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5 * 5, 64), nn.ReLU(),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        if x.ndim == 2:  # flat 784-pixel rows
            x = x.reshape(-1, 1, 28, 28)
        return self.classifier(self.features(x))
