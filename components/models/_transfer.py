"""Shared pieces of the transfer models: gray->RGB in the graph, backbone weights.

``weights`` semantics (all transfer models):

* ``None``        -> random init; weights_source ``"random init"``.
* ``"imagenet"``  -> the ImageNet notop file keras.applications itself uses: same file
  name, same URL, same cache (``~/.keras/models``, or ``$KERAS_HOME/models`` when that
  variable is set), fetched with ``tf_keras.utils.get_file``. A cached file is used
  without touching the network. Otherwise an HTTP HEAD probe of the URL runs first
  (at most ``FER_WEIGHTS_PROBE_TIMEOUT_S``, default 5 s, in a daemon thread, so no
  internet / no DNS / a silent proxy never hangs the build), then the download with a
  60 s per-operation socket timeout.
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
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from typing import Optional

import numpy as np
import tf_keras as keras

from components.models._common import FILE_PREFIX, IMAGENET, RANDOM_INIT, check_weights

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = float(os.environ.get("FER_WEIGHTS_PROBE_TIMEOUT_S", "5"))
DOWNLOAD_SOCKET_TIMEOUT_S = 60.0  # per socket operation while downloading


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
    """The directory whose ``models/`` holds downloaded weights: ``$KERAS_HOME`` when set
    (tf_keras' own get_file ignores that variable; we pass it explicitly), else
    ``~/.keras``; like get_file, ``/tmp/.keras`` when that is not writable."""
    cache_dir = os.path.expanduser(
        os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"))
    return cache_dir if os.access(cache_dir, os.W_OK) else os.path.join("/tmp", ".keras")


def _probe(url: str, timeout_s: float) -> Optional[str]:
    """None when the URL answers an HTTP HEAD request within timeout_s, else the reason.
    Runs in a daemon thread so that even a stuck DNS lookup (which ignores socket
    timeouts) cannot block the caller longer than timeout_s."""
    result = {}

    def head():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 - https URL
                result["ok"] = True
        except urllib.error.HTTPError as err:
            result["error"] = f"{url} answered HTTP {err.code} {err.reason}"
        except Exception as err:  # noqa: BLE001 - URLError, timeouts, ...
            result["error"] = f"cannot reach {url} ({getattr(err, 'reason', err)})"

    thread = threading.Thread(target=head, daemon=True, name="imagenet-weights-probe")
    thread.start()
    thread.join(timeout_s + 0.5)
    if result.get("ok"):
        return None
    return result.get("error", f"no answer from {url} within {timeout_s:g} s")


def fetch_imagenet_file(fname: str, url: str, file_hash: Optional[str]) -> str:
    """Path of the cached ImageNet weights file, downloaded into the Keras cache if
    needed; raises RuntimeError saying why it cannot be had."""
    cache_dir = keras_cache_dir()
    cached = os.path.join(cache_dir, "models", fname)
    if not os.path.exists(cached):
        reason = _probe(url, PROBE_TIMEOUT_S)
        if reason:
            raise RuntimeError(f"{fname} is not in the Keras cache ({cached}) and cannot be "
                               f"downloaded: {reason}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)  # a stalled download errors out
    try:
        return keras.utils.get_file(fname, url, cache_subdir="models", file_hash=file_hash,
                                    cache_dir=cache_dir)
    except Exception as err:  # get_file raises bare Exception for URL errors
        raise RuntimeError(f"download of {url} failed: {err}") from err
    finally:
        socket.setdefaulttimeout(previous)


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


def load_backbone_weights(backbone: keras.Model, weights: Optional[str], fname: str,
                          url: str, file_hash: Optional[str] = None) -> str:
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
                backbone.name, err, RANDOM_INIT, fname, os.path.join(keras_cache_dir(), "models"))
            return RANDOM_INIT
        logger.info("Loaded ImageNet weights for %s from %s", backbone.name, path)
        return IMAGENET
    path = weights
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist (weights must be None, "
                                f"'imagenet' or a local .h5 path)")
    _load_file(backbone, path)
    return FILE_PREFIX + path
