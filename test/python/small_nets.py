"""Small CNNs for the exporter tests: every geometry feature convgen reads."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallNet(nn.Module):
    """conv-bn-relu, depthwise strided conv-bn-relu6, 1x1 with bias, a residual
    block whose ReLU follows an in-place add (must not be fused), and a 1x3
    conv followed by a functional ReLU (not detectable, so not fused)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.act6 = nn.ReLU6()
        self.pw = nn.Conv2d(8, 16, 1)
        self.block = nn.Sequential()
        self.conv4 = nn.Conv2d(16, 16, 3, padding=2, dilation=2, bias=False)
        self.bn4 = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 4, (1, 3), padding=(0, 1))
        # Non-trivial BatchNorm statistics, so folding is actually exercised.
        generator = torch.Generator().manual_seed(1)
        for bn in (self.bn1, self.bn2, self.bn4):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator) * 0.3)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.randn(bn.num_features, generator=generator))
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=generator))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.act6(self.bn2(self.dw(x)))
        x = self.pw(x)
        out = self.bn4(self.conv4(x))
        out += x
        out = self.relu(out)
        return F.relu(self.head(out))


class NoConv(nn.Module):
    def forward(self, x):
        return x * 2


class FeatureNet(nn.Module):
    """A conv with its own bias before a BatchNorm, Hardtanh(0, 6) as ReLU6,
    padding='same', a conv reused twice with the same fusion, and a conv
    under torch.nn.utils.parametrize (not a leaf module)."""

    def __init__(self):
        super().__init__()
        self.biased = nn.Conv2d(3, 6, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(6)
        self.clamp = nn.Hardtanh(0.0, 6.0)
        self.same = nn.Conv2d(6, 6, 5, padding="same", dilation=1)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.spectral = nn.utils.parametrizations.spectral_norm(nn.Conv2d(6, 2, 1))
        generator = torch.Generator().manual_seed(2)
        self.bn.running_mean.copy_(torch.randn(6, generator=generator))
        self.bn.running_var.copy_(torch.rand(6, generator=generator) + 0.5)

    def forward(self, x):
        x = self.clamp(self.bn(self.biased(x)))
        x = self.same(x)
        x = self.relu(self.shared(x))
        x = self.relu(self.shared(x))
        return self.spectral(x)


class InconsistentReuse(nn.Module):
    """One conv called twice, once followed by a ReLU and once not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.conv(self.relu(self.conv(x)))


class RaisesValueError(nn.Module):
    def forward(self, x):
        raise ValueError("unsupported input")
