"""Full-size networks of the families grouped layers come from, rebuilt here from their public
definitions (torchvision, timm and segmentation_models_pytorch do not import beside this torch):
RegNetX-400MF is the ``regnet`` model plugin; ConvNeXt-T as torchvision defines it; an FPN with a
ResNet-34 encoder and GroupNorm(32) segmentation blocks as segmentation_models_pytorch does."""

import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit.plugins.layer_types.standard import LayerNorm

from .zoo import ConvNeXtBlock


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's convnext.LayerNorm2d)."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNorm2dPlugin:
    """What the zoo plugin registers for torchvision's and timm's LayerNorm2d, for this one."""

    @pk.hookimpl
    def prunekit_layer_types(self):
        return [LayerNorm(LayerNorm2d, dim=1)]


class ConvNeXt(nn.Module):
    """ConvNeXt (Liu et al. 2022) as torchvision builds it: a 4×4 patchify stem with LayerNorm2d,
    stages of CNBlocks, LayerNorm2d + 2×2 stride-2 convolutions between stages, and a head of
    average pooling, LayerNorm2d and a linear classifier. Defaults: ConvNeXt-T."""

    def __init__(self, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3), classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            layers.append(nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth))))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet34Encoder(nn.Module):
    """torchvision's ResNet-34 without its head, returning the features of every stride."""

    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for width, depth, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stages.append(
                nn.Sequential(
                    *(BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1) for j in range(depth))
                )
            )
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x):
        c1 = F.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(c1))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c2, c3, c4, self.layer4(c4)


class Conv3x3GNReLU(nn.Module):
    def __init__(self, cin, cout, upsample):
        super().__init__()
        self.upsample = upsample
        self.block = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(32, cout), nn.ReLU())

    def forward(self, x):
        x = self.block(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True) if self.upsample else x


class FPNBlock(nn.Module):
    def __init__(self, pyramid, skip):
        super().__init__()
        self.skip_conv = nn.Conv2d(skip, pyramid, 1)

    def forward(self, x, skip):
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.skip_conv(skip)


def segmentation_block(cin, cout, upsamples):
    blocks = [Conv3x3GNReLU(cin, cout, upsample=bool(upsamples))]
    blocks += [Conv3x3GNReLU(cout, cout, upsample=True) for _ in range(1, upsamples)]
    return nn.Sequential(*blocks)


class FPN(nn.Module):
    """segmentation_models_pytorch's FPN (Kirillov et al.'s panoptic FPN decoder): lateral 1×1s
    and a top-down path to 256 channels, per-level segmentation blocks of 3×3 + GroupNorm(32) +
    ReLU to 128 channels, summed, a 1×1 head and ×4 bilinear upsampling."""

    def __init__(self, classes=1, pyramid=256, segmentation=128):
        super().__init__()
        self.encoder = ResNet34Encoder()
        self.p5 = nn.Conv2d(512, pyramid, 1)
        self.p4, self.p3, self.p2 = FPNBlock(pyramid, 256), FPNBlock(pyramid, 128), FPNBlock(pyramid, 64)
        self.seg_blocks = nn.ModuleList(segmentation_block(pyramid, segmentation, n) for n in (3, 2, 1, 0))
        self.dropout = nn.Dropout2d(0.2)
        self.head = nn.Conv2d(segmentation, classes, 1)

    def forward(self, x):
        c2, c3, c4, c5 = self.encoder(x)
        p5 = self.p5(c5)
        p4 = self.p4(p5, c4)
        p3 = self.p3(p4, c3)
        p2 = self.p2(p3, c2)
        merged = sum(block(p) for block, p in zip(self.seg_blocks, (p5, p4, p3, p2)))
        out = self.head(self.dropout(merged))
        return F.interpolate(out, scale_factor=4, mode="bilinear", align_corners=True)
