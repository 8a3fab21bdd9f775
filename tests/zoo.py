"""Small models covering the topologies the channel tracer must get exactly right."""

import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk


def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        return F.relu(self.se(self.bn2(self.conv2(self.conv1(x)))) + self.shortcut(x))


class ResNetTiny(nn.Module):
    """Residual adds (identity and projection shortcuts), squeeze-excite gating, global mean and
    a linear classifier."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.layer3 = Block(16, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class EncoderDecoder(nn.Module):
    """Depthwise (with and without multiplier), grouped, transposed and
    depthwise-transposed convolutions, a channels-last linear layer, a flatten into a linear
    layer for an auxiliary head."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(2, 8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.pw2 = nn.Conv2d(12, 12, 1)
        self.dw2 = nn.Conv2d(12, 24, 3, stride=2, padding=1, groups=12)
        self.bn = nn.BatchNorm2d(24)
        self.up = nn.ConvTranspose2d(24, 10, 2, stride=2)
        self.up_dw = nn.ConvTranspose2d(10, 10, 3, padding=1, groups=10)
        self.prelu = nn.PReLU(10)
        self.mlp = nn.Linear(10, 10)
        self.head = nn.Conv2d(10, 3, 1)
        self.aux = nn.Linear(24 * 4 * 4, 2)

    def forward(self, x):
        x = self.pw(self.dw(self.stem(x)))
        x = F.relu(self.bn(self.dw2(self.pw2(self.grouped(x)))))
        aux = self.aux(x.flatten(1))
        y = self.prelu(self.up_dw(self.up(x)))
        y = y + self.mlp(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels-last MLP, residual
        y = self.head(y)
        return y, aux


class DenseCascade(nn.Module):
    """Cascaded dense concatenation: every layer reads the concatenation of all before it."""

    def __init__(self, c=4, growth=3, layers=4):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(), nn.Conv2d(c + i * growth, growth, 3, padding=1))
            for i in range(layers)
        )
        self.head = nn.Conv2d(c + layers * growth, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return self.head(x)


class CatTwice(nn.Module):
    """The same tensor concatenated with itself, and a cat of cats with repeats."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 3, 3, padding=1)
        self.c = nn.Conv2d(1, 5, 3, padding=1)
        self.mix = nn.Conv2d(8, 6, 1)
        self.head = nn.Conv2d(6 + 7 + 5 + 9, 2, 1)

    def forward(self, x):
        a, b, c = self.a(x), self.b(x), self.c(x)
        twice = self.mix(torch.cat([a, a], 1))
        nested = torch.cat([torch.cat([a, b], 1), c, torch.cat([c, a], 1)], 1)
        return self.head(torch.cat([twice, nested], 1))


class SplitChunk(nn.Module):
    """chunk along channels (coupled halves), split with fixed sizes (unprunable), split,
    slicing and padding along space (channels pass)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 3, 3, padding=1)
        self.right = nn.Conv2d(4, 3, 3, padding=1)
        self.fixed = nn.Conv2d(1, 6, 1)
        self.p = nn.Conv2d(2, 2, 1)
        self.q = nn.Conv2d(4, 2, 1)
        self.head = nn.Conv2d(3 + 3 + 2 + 2 + 8, 2, 1)

    def forward(self, x):
        s = self.stem(x)
        a, b = s.chunk(2, dim=1)
        p, q = torch.split(self.fixed(x), [2, 4], dim=1)
        top, bottom = s.split(s.shape[2] // 2, dim=2)
        spatial = F.pad(torch.cat([top, bottom[:, :, 1:]], dim=2), [0, 0, 0, 1])
        return self.head(torch.cat([self.left(a), self.right(b), self.p(p), self.q(q), spatial], 1))


class GroupedBottleneck(nn.Module):
    """ResNeXt bottlenecks (Xie et al. 2017: 1×1, grouped 3×3 of cardinality 4, 1×1, residual),
    the second with a grouped 1×1 in and a learned per-channel layer scale on its branch, and a
    grouped transposed convolution on the way out."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.a1, self.b1, self.c1 = conv_bn(16, 32, 1), conv_bn(32, 32, 3, groups=4), nn.Conv2d(32, 16, 1)
        self.a2, self.b2, self.c2 = conv_bn(16, 24, 1, groups=2), conv_bn(24, 24, 3, groups=4), nn.Conv2d(24, 16, 1)
        self.scale = nn.Parameter(torch.ones(1, 16, 1, 1))
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2, groups=4)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.c1(self.b1(self.a1(x))))
        x = F.relu(x + self.scale * self.c2(self.b2(self.a2(x))))
        return self.head(F.relu(self.up(x)))


class GroupNormFPN(nn.Module):
    """An FPN decoder as in Kirillov et al. 2019's panoptic FPN: lateral 1×1s, a top-down path of
    upsample-and-add, per-level 3×3 + GroupNorm + ReLU segmentation blocks summed, a 3×3 head."""

    def __init__(self, c=16, seg=8, groups=4):
        super().__init__()
        self.enc = nn.ModuleList([conv_bn(1, 8, 3, 2), conv_bn(8, 16, 3, 2), conv_bn(16, 24, 3, 2)])
        self.lateral = nn.ModuleList([nn.Conv2d(w, c, 1) for w in (8, 16, 24)])
        self.seg = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, seg, 3, padding=1, bias=False), nn.GroupNorm(groups, seg), nn.ReLU())
            for _ in range(3)
        )
        self.head = nn.Conv2d(seg, 2, 3, padding=1)

    def forward(self, x):
        features = []
        for enc in self.enc:
            x = enc(x)
            features.append(x)
        p = self.lateral[2](features[2])
        pyramid = [p]
        for level in (1, 0):
            p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.lateral[level](features[level])
            pyramid.insert(0, p)
        size = pyramid[0].shape[-2:]
        merged = sum(F.interpolate(block(p), size=size, mode="nearest") for block, p in zip(self.seg, pyramid))
        return self.head(merged)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class ConvNeXtBlock(nn.Module):
    """A ConvNeXt block as torchvision defines CNBlock (Liu et al. 2022): depthwise 7×7, then
    channels last: LayerNorm, Linear 4×, GELU, Linear back; a per-channel layer scale and a
    residual add."""

    def __init__(self, dim):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 0.5)

    def forward(self, x):
        result = self.layer_scale * self.block(x)
        result += x
        return result


class ConvNeXtTiny(nn.Module):
    """A patchify stem with BatchNorm, two ConvNeXt blocks, and a pooled linear head."""

    def __init__(self, dim=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 2, stride=2), nn.BatchNorm2d(dim))
        self.blocks = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))
        self.fc = nn.Linear(dim, 3)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


MODELS = {
    "unet": (lambda: pk.get("model", "unet", width=4, n_classes=3), (2, 1, 32, 48)),
    "densenet": (lambda: pk.get("model", "densenet", channel_size=6), (2, 1, 32, 32)),
    "resnet": (ResNetTiny, (2, 3, 16, 16)),
    "encoder_decoder": (EncoderDecoder, (2, 2, 8, 8)),
    "dense_cascade": (DenseCascade, (2, 1, 8, 8)),
    "cat_twice": (CatTwice, (2, 1, 6, 6)),
    "split_chunk": (SplitChunk, (2, 1, 8, 8)),
    "grouped_bottleneck": (GroupedBottleneck, (2, 3, 8, 8)),
    "regnet": (
        lambda: pk.get("model", "regnet", widths=[16, 32], depths=[2, 1], group_width=8, stem=8, n_classes=3),
        (2, 3, 16, 16),
    ),
    "groupnorm_fpn": (GroupNormFPN, (2, 1, 32, 32)),
    "convnext": (ConvNeXtTiny, (2, 3, 8, 8)),
}
