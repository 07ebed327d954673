"""ResNet-50, VGG16, MobileNetV2, DenseNet121, EfficientNet-B0 and Swin-T in plain PyTorch.

No torchvision or timm needed (their wheels pull a different torch). Each definition follows
its paper and torchvision's implementation, **with torchvision's module names**: at the
default arguments ``resnet50().state_dict()`` has exactly the keys and shapes of
``torchvision.models.resnet50().state_dict()`` (likewise for the others; ``vgg16(batch_norm=True)``
matches ``vgg16_bn``), so torchvision's pretrained weights load with ``load_state_dict`` where
they are available. Initialisation follows torchvision too.

Every factory takes ``num_classes``, ``in_channels``, ``width`` (a channel multiplier; depth
and topology are unchanged) and ``small_input`` for 28/32 px images (``swin_t`` takes
``patch_size``/``window_size`` instead):

* ResNet / DenseNet: the stem's 7x7 stride-2 conv becomes a 3x3 stride-1 conv (the max-pool
  stays), so the network stride is 16 instead of 32.
* MobileNetV2 / EfficientNet: the stem conv has stride 1 instead of 2 (network stride 16).
* VGG: the max-pools use ``ceil_mode`` (28 -> 14 -> 7 -> 4 -> 2 -> 1) and the classifier sees
  the 1x1 pooled map (``512*width`` inputs) instead of 7x7.

With ``width != 1`` or ``small_input`` the key *names* are still torchvision's, only shapes
differ. All models trace with ``torch.fx`` (the Swin window attention is an ``fx.wrap``-ed
leaf function, as in torchvision) so ``splitwire.split`` can cut them at block boundaries;
Swin's features are NHWC (``channel_axis`` 3 in ``splitwire.models``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["resnet50", "vgg16", "mobilenet_v2", "densenet121", "efficientnet_b0", "swin_t",
           "count_parameters", "ARCHS"]


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's (from the TF MobileNet code): round to a multiple of ``divisor``, at most -10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _init_conv_bn(m: nn.Module) -> bool:
    """MobileNetV2's and EfficientNet's init of convs (He, fan-out) and BN (1, 0); False for others."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    else:
        return False
    return True


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: conv (no bias) -> BN -> activation, keys 0/1/2."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU):
        padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
                                   norm_layer(cout)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: drop whole residual branches per sample while training."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        keep = 1.0 - self.p
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


# --------------------------------------------------------------------------- ResNet-50

class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision.models.resnet.Bottleneck."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3,
                 width: float = 1.0, small_input: bool = False, zero_init_residual: bool = False):
        super().__init__()
        self.inplanes = _ch(64, width)
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(_ch(64, width), layers[0])
        self.layer2 = self._make_layer(_ch(128, width), layers[1], 2)
        self.layer3 = self._make_layer(_ch(256, width), layers[2], 2)
        self.layer4 = self._make_layer(_ch(512, width), layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(_ch(512, width) * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
             small_input: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 v1.5 (He et al. 2016; torchvision layout): 25.56M parameters at width 1.
    ``zero_init_residual`` (as torchvision's) starts each block as the identity."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels, width, small_input, zero_init_residual)


# --------------------------------------------------------------------------- VGG16

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, last: int, num_classes: int, hidden: int, pool: int,
                 dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(last * pool * pool, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, small_input: bool = False,
          batch_norm: bool = False) -> VGG:
    """VGG16 (Simonyan & Zisserman 2015, configuration D; torchvision ``vgg16``/``vgg16_bn``
    layout): 13 3x3 convs in 5 stages + 3 fully connected layers, 138.36M parameters at width 1.

    ``width`` scales the conv channels and the two 4096-wide hidden layers.
    """
    layers: list[nn.Module] = []
    c = in_channels
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=small_input))
        else:
            v = _ch(v, width)
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
    return VGG(nn.Sequential(*layers), c, num_classes, _ch(4096, width), 1 if small_input else 7)


# --------------------------------------------------------------------------- MobileNetV2

class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, 1, activation_layer=nn.ReLU6))
        layers += [Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden, activation_layer=nn.ReLU6),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2, round_nearest: int = 8):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                   [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        c = _make_divisible(32 * width, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width), round_nearest)
        features: list[nn.Module] = [Conv2dNormActivation(in_channels, c, 3, 1 if small_input else 2,
                                                          activation_layer=nn.ReLU6)]
        for t, ch, n, s in setting:
            out = _make_divisible(ch * width, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(Conv2dNormActivation(c, self.last_channel, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if not _init_conv_bn(m) and isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 small_input: bool = False) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018; torchvision layout, its ``width_mult`` rounding):
    3.50M parameters at width 1."""
    return MobileNetV2(num_classes, in_channels, width, small_input)


# --------------------------------------------------------------------------- DenseNet121

class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        conv0 = (nn.Conv2d(in_channels, num_init_features, 3, 1, 1, bias=False) if small_input
                 else nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False))
        self.features = nn.Sequential(OrderedDict([
            ("conv0", conv0), ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(3, 2, 1))]))
        n = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, n, bn_size, growth_rate))
            n += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.features(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


def densenet121(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                small_input: bool = False) -> DenseNet:
    """DenseNet-121 (Huang et al. 2017, DenseNet-BC; torchvision layout): dense blocks of
    6/12/24/16 layers, growth rate 32*width, 64*width stem channels; 7.98M parameters at width 1."""
    return DenseNet(_ch(32, width), (6, 12, 24, 16), _ch(64, width), 4, num_classes, in_channels, small_input)


# --------------------------------------------------------------------------- EfficientNet-B0

class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation (1x1 convs, SiLU inside, sigmoid gate)."""

    def __init__(self, input_channels: int, squeeze_channels: int, activation=nn.SiLU):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class MBConv(nn.Module):
    def __init__(self, expand_ratio: float, kernel: int, stride: int, cin: int, cout: int, sd_prob: float):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = _make_divisible(cin * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(Conv2dNormActivation(cin, expanded, 1, activation_layer=nn.SiLU))
        layers += [Conv2dNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation_layer=nn.SiLU),
                   SqueezeExcitation(expanded, max(1, cin // 4)),
                   Conv2dNormActivation(expanded, cout, 1, activation_layer=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.out_channels = cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(nn.Module):
    # expand_ratio, kernel, stride, in, out, layers (B0 = width 1.0, depth 1.0)
    B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 depth: float = 1.0, small_input: bool = False, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2):
        super().__init__()
        cfg = [(t, k, s, _make_divisible(i * width, 8), _make_divisible(o * width, 8), int(math.ceil(n * depth)))
               for t, k, s, i, o, n in self.B0]
        c0 = cfg[0][3]
        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, c0, 3, 1 if small_input else 2,
                                                        activation_layer=nn.SiLU)]
        total = sum(n for *_, n in cfg)
        block_id = 0
        for t, k, s, cin, cout, n in cfg:
            stage = []
            for i in range(n):
                sd = stochastic_depth_prob * float(block_id) / total
                stage.append(MBConv(t, k, s if i == 0 else 1, cin if i == 0 else cout, cout, sd))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = cfg[-1][4]
        last_out = 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, 1, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes))
        for m in self.modules():
            if not _init_conv_bn(m) and isinstance(m, nn.Linear):
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                    small_input: bool = False) -> EfficientNet:
    """EfficientNet-B0 (Tan & Le 2019; torchvision layout: MBConv with squeeze-excitation,
    SiLU, stochastic depth 0.2, dropout 0.2): 5.29M parameters at width 1."""
    return EfficientNet(num_classes, in_channels, width, 1.0, small_input)


# --------------------------------------------------------------------------- Swin-T

class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)


def _patch_merging_pad(x: Tensor) -> Tensor:
    H, W, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    return torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :],
                      x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)


torch.fx.wrap("_patch_merging_pad")


def _get_relative_position_bias(table: Tensor, index: Tensor, window_size: list[int]) -> Tensor:
    n = window_size[0] * window_size[1]
    bias = table[index].view(n, n, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


torch.fx.wrap("_get_relative_position_bias")


def shifted_window_attention(x: Tensor, qkv_weight: Tensor, proj_weight: Tensor, relative_position_bias: Tensor,
                             window_size: list[int], num_heads: int, shift_size: list[int],
                             attention_dropout: float = 0.0, dropout: float = 0.0,
                             qkv_bias: Tensor | None = None, proj_bias: Tensor | None = None,
                             training: bool = True) -> Tensor:
    """Window multi-head self-attention with cyclic shift and relative position bias (Swin,
    torchvision's ``shifted_window_attention``). ``x``: [B, H, W, C]."""
    B, H, W, C = x.shape
    # Spatial sizes are fixed for a given input size; only the batch stays symbolic in ONNX.
    H, W = int(H), int(W)
    pad_r = (window_size[1] - W % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - H % window_size[0]) % window_size[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    pad_H, pad_W = H + pad_b, W + pad_r
    shift_size = list(shift_size)
    # A window as large as the map: nothing to shift.
    if window_size[0] >= pad_H:
        shift_size[0] = 0
    if window_size[1] >= pad_W:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    nh, nw = pad_H // window_size[0], pad_W // window_size[1]
    num_windows = nh * nw
    n = window_size[0] * window_size[1]
    x = x.view(-1, nh, window_size[0], nw, window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, n, C)            # B*nW, Ws*Ws, C
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(-1, n, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (C // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift_size) > 0:
        mask = torch.zeros((pad_H, pad_W), dtype=x.dtype, device=x.device)
        h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]), (-shift_size[0], None))
        w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]), (-shift_size[1], None))
        count = 0
        for h in h_slices:
            for w in w_slices:
                mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        mask = mask.view(nh, window_size[0], nw, window_size[1]).permute(0, 2, 1, 3).reshape(num_windows, n)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(-1, num_windows, num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, n, n)
    attn = F.softmax(attn, dim=-1)
    attn = F.dropout(attn, p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(-1, n, C)
    x = F.linear(x, proj_weight, proj_bias)
    x = F.dropout(x, p=dropout, training=training)
    x = x.view(-1, nh, nw, window_size[0], window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, pad_H, pad_W, C)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


torch.fx.wrap("shifted_window_attention")


class PatchMerging(nn.Module):
    def __init__(self, dim: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(_patch_merging_pad(x)))


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int,
                 qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.window_size, self.shift_size = list(window_size), list(shift_size)
        self.num_heads = num_heads
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
        flat = torch.flatten(coords, 1)
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += wh - 1
        rel[:, :, 1] += ww - 1
        rel[:, :, 0] *= 2 * ww - 1
        self.register_buffer("relative_position_index", rel.sum(-1).flatten())
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def get_relative_position_bias(self) -> Tensor:
        return _get_relative_position_bias(self.relative_position_bias_table, self.relative_position_index,
                                           self.window_size)

    def forward(self, x: Tensor) -> Tensor:
        return shifted_window_attention(
            x, self.qkv.weight, self.proj.weight, self.get_relative_position_bias(), self.window_size,
            self.num_heads, shift_size=self.shift_size, attention_dropout=self.attention_dropout,
            dropout=self.dropout, qkv_bias=self.qkv.bias, proj_bias=self.proj.bias, training=self.training)


class MLP(nn.Sequential):
    """torchvision.ops.MLP as Swin uses it: Linear, GELU, Dropout, Linear, Dropout (keys 0 and 3)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: list[int], shift_size: list[int],
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attention_dropout: float = 0.0,
                 stochastic_depth_prob: float = 0.0, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads,
                                           attention_dropout=attention_dropout, dropout=dropout)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformer(nn.Module):
    def __init__(self, patch_size=(4, 4), embed_dim: int = 96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window_size=(7, 7), mlp_ratio: float = 4.0, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-5)
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(in_channels, embed_dim, kernel_size=tuple(patch_size), stride=tuple(patch_size)),
            Permute([0, 2, 3, 1]), norm_layer(embed_dim))]
        total = sum(depths)
        block_id = 0
        for i, depth in enumerate(depths):
            dim = embed_dim * 2 ** i
            stage = []
            for j in range(depth):
                sd = stochastic_depth_prob * float(block_id) / (total - 1)
                stage.append(SwinTransformerBlock(
                    dim, num_heads[i], list(window_size), [0 if j % 2 == 0 else w // 2 for w in window_size],
                    mlp_ratio, stochastic_depth_prob=sd, norm_layer=norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim, norm_layer))
        self.features = nn.Sequential(*layers)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(num_features)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # as torchvision: this overrides the MLPs' xavier init
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.features(x))
        return self.head(self.flatten(self.avgpool(self.permute(x))))


def swin_t(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, patch_size: int = 4,
           window_size: int = 7, num_heads: tuple[int, ...] = (3, 6, 12, 24),
           stochastic_depth_prob: float = 0.2) -> SwinTransformer:
    """Swin-T (Liu et al. 2021; torchvision ``swin_t`` layout, features NHWC): stages of 2/2/6/2
    blocks alternating regular and shifted windows, relative position bias, patch merging;
    embedding 96*width; 28.29M parameters at width 1."""
    return SwinTransformer([patch_size] * 2, _ch(96, width), (2, 2, 6, 2), tuple(num_heads), [window_size] * 2,
                           stochastic_depth_prob=stochastic_depth_prob, num_classes=num_classes,
                           in_channels=in_channels)


ARCHS = {"resnet50": resnet50, "vgg16": vgg16, "mobilenet_v2": mobilenet_v2, "densenet121": densenet121,
         "efficientnet_b0": efficientnet_b0, "swin_t": swin_t}


# --------------------------------------------------------------------------- Fashion-MNIST variants
# 28x28 grayscale: in_channels 1, the small-input stem (network stride 16), channels scaled by
# ``width``; the depth and topology are the paper's. ``epochs``/``lr`` are the training recipe
# splitwire/train_fmnist.py uses for the committed weights.
FMNIST_VARIANTS: dict[str, dict] = {
    "fmnist_resnet50": dict(arch="resnet50", kwargs=dict(width=0.25, small_input=True),
                            split_points=["layer1", "layer2", "layer3"], default_split="layer2",
                            epochs=1, lr=2e-3),
    "fmnist_vgg16": dict(arch="vgg16", kwargs=dict(width=0.25, small_input=True, batch_norm=True),
                         split_points=["features.13", "features.23", "features.33"], default_split="features.23",
                         epochs=1, lr=2e-3),
    "fmnist_mobilenet_v2": dict(arch="mobilenet_v2", kwargs=dict(width=0.35, small_input=True),
                                split_points=["features.3", "features.6", "features.13"], default_split="features.6",
                                epochs=1, lr=3e-3),
    "fmnist_densenet121": dict(arch="densenet121", kwargs=dict(width=0.25, small_input=True),
                               split_points=["features.transition1", "features.transition2",
                                             "features.transition3"],
                               default_split="features.transition2", epochs=1, lr=3e-3),
    "fmnist_efficientnet_b0": dict(arch="efficientnet_b0", kwargs=dict(width=0.35, small_input=True),
                                   split_points=["features.2", "features.4", "features.6"],
                                   default_split="features.4", epochs=1, lr=3e-3),
    "fmnist_swin_t": dict(arch="swin_t", kwargs=dict(width=0.25, patch_size=2, window_size=4, num_heads=(1, 2, 4, 8)),
                          split_points=["features.1", "features.3", "features.5"], default_split="features.3",
                          epochs=1, lr=1e-3),
}


def fmnist_model(name: str) -> nn.Module:
    """The untrained Fashion-MNIST variant ``name`` (a key of ``FMNIST_VARIANTS``), 10 classes."""
    v = FMNIST_VARIANTS[name]
    return ARCHS[v["arch"]](num_classes=10, in_channels=1, **v["kwargs"])
