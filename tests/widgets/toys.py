"""Small inputs the panel tests share."""
import torch
import torch.nn as nn

from workbench.data import Dataset


def tiny_landscape(n_train: int = 60, n_test: int = 30):
    """A seeded 6-8-3 MLP and random train / test splits of 6 features and 3 classes."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    data = {"train": Dataset(torch.randn(n_train, 6, generator=g), torch.randint(0, 3, (n_train,), generator=g), "tr"),
            "test": Dataset(torch.randn(n_test, 6, generator=g), torch.randint(0, 3, (n_test,), generator=g), "te")}
    return model, data
