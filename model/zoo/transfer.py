"""Shared pieces of the transfer models: gray->RGB in the graph, backbone weights.

``weights`` semantics (all transfer models):

* ``None``        -> random init; weights_source ``"random init"``.
* ``"imagenet"``  -> the ImageNet notop file keras.applications itself uses: same file
  name, same URL, same cache (``~/.keras/models``, or ``$KERAS_HOME/models`` when that
  variable is set). A cached file that passes its hash is used without touching the
  network. Otherwise it is
  downloaded (:func:`download`: a timeout on this one connection, not a process-wide
  socket default, so a refused or silent server fails in ``DOWNLOAD_TIMEOUT_S``), checked
  against its hash and moved into the cache whole.
  If the file cannot be had (offline, HTTP error, bad hash, unreadable file) the
  backbone keeps its random init, a loud WARNING says so and why, and
  weights_source is ``"random init"``; the trainer records that in the model metadata.
* any other string -> a local weights file (.h5) for the backbone, e.g. a keras
  ``*_notop.h5`` file; weights_source ``"file:<path>"``. Loaded topologically first;
  if the layer structure differs (e.g. a file with the top), loaded by layer name.
  A missing or unusable file raises: an explicit path is never silently ignored.

The backbone is always built with ``weights=None`` and then loaded, so one build serves
every case.
"""

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
from typing import Any, Optional, Tuple

import numpy as np
import tf_keras as keras

from model.zoo import common
from model.zoo.common import FILE_PREFIX, IMAGENET, RANDOM_INIT, check_weights

logger = logging.getLogger(__name__)

# Connect and every read of a weights download (not the DNS lookup, which the operating
# system's resolver bounds).
DOWNLOAD_TIMEOUT_S = float(os.environ.get("FER_WEIGHTS_TIMEOUT_S", "30"))


def gray_to_rgb(x):
    """[B,48,48,1] -> [B,48,48,3] by repeating the channel: a built-in Concatenate layer
    (no parameters, no Lambda), so the SavedModel needs no custom objects."""
    return keras.layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested keras.applications backbone of a transfer model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"{model.name}: expected one nested backbone, found {len(nested)}")
    return nested[0]


def keras_cache_dir() -> str:
    """The directory whose ``models/`` holds downloaded weights: ``$KERAS_HOME`` when set,
    else ``~/.keras``; like keras' get_file, ``/tmp/.keras`` when that is not writable."""
    cache_dir = os.path.expanduser(
        os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    )
    return cache_dir if os.access(cache_dir, os.W_OK) else os.path.join("/tmp", ".keras")


def has_hash(path: str, file_hash: str) -> bool:
    """Whether the file's md5 (for 32 hex digits) or sha256 is ``file_hash``."""
    digest = hashlib.md5() if len(file_hash) == 32 else hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == file_hash


def download(
    url: str, path: str, file_hash: Optional[str] = None, timeout_s: float = DOWNLOAD_TIMEOUT_S
) -> str:
    """Downloads ``url`` to ``path`` (via a temporary file in the same folder, so ``path``
    is never half-written) and checks ``file_hash`` (md5 for 32 hex digits, else sha256);
    RuntimeError saying why on any failure."""
    tmp = f"{path}.part{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        if file_hash and not has_hash(tmp, file_hash):
            raise RuntimeError(f"{url}: the downloaded file's hash is not {file_hash}")
        os.replace(tmp, path)
        return path
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{url} answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise RuntimeError(f"cannot download {url} ({getattr(err, 'reason', err)})") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_imagenet_file(fname: str, url: str, file_hash: Optional[str]) -> str:
    """Path of the ImageNet weights file in the Keras cache, downloaded there first if
    it is missing or fails its hash (as keras' get_file); raises RuntimeError saying why
    it cannot be had."""
    cached = os.path.join(keras_cache_dir(), "models", fname)
    if os.path.exists(cached) and (not file_hash or has_hash(cached, file_hash)):
        return cached
    return download(url, cached, file_hash)


def on_gray_images(
    backbone: keras.Model, weights: Optional[str], fname: str, url: str, file_hash: Optional[str]
) -> Tuple[Any, Any, str]:
    """(model input, backbone output, weights_source): ``weights`` applied to
    ``backbone`` (see the module docstring), which then reads the model's gray input
    repeated to three channels."""
    source = load_backbone_weights(backbone, weights, fname, url, file_hash)
    inputs = common.image_input()
    return inputs, backbone(gray_to_rgb(inputs)), source


def _load_file(backbone: keras.Model, path: str) -> None:
    """Topological load; by layer name when the file's structure differs."""
    try:
        backbone.load_weights(path)
        return
    except ValueError as err:
        logger.info("Topological load of %s failed (%s); loading by layer name", path, err)
    before = [w.copy() for w in backbone.get_weights()]
    backbone.load_weights(path, by_name=True, skip_mismatch=True)
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, backbone.get_weights()))
    if changed == 0:
        raise ValueError(f"{path}: no layer of {backbone.name} matched the weights file")
    logger.info("Loaded %d of %d backbone tensors from %s by name", changed, len(before), path)


def load_backbone_weights(
    backbone: keras.Model,
    weights: Optional[str],
    fname: str,
    url: str,
    file_hash: Optional[str] = None,
) -> str:
    """Apply ``weights`` to ``backbone`` (see module docstring); returns weights_source."""
    weights = check_weights(weights)
    if weights is None:
        return RANDOM_INIT
    if weights == IMAGENET:
        try:
            path = fetch_imagenet_file(fname, url, file_hash)
            backbone.load_weights(path)
        except Exception as err:  # noqa: BLE001 - every failure falls back, loudly
            logger.warning(
                "!!! ImageNet weights for %s are NOT available: %s. FALLING BACK TO RANDOM "
                "INIT for the backbone; weights_source='%s'. Put %s into %s (or pass a local "
                "weights file path) to train from ImageNet weights. !!!",
                backbone.name,
                err,
                RANDOM_INIT,
                fname,
                os.path.join(keras_cache_dir(), "models"),
            )
            return RANDOM_INIT
        logger.info("Loaded ImageNet weights for %s from %s", backbone.name, path)
        return IMAGENET
    path = weights
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"weights file {path!r} does not exist (weights must be None, "
            f"'imagenet' or a local .h5 path)"
        )
    _load_file(backbone, path)
    return FILE_PREFIX + path
