"""The data contract of the pipeline: feature names, shapes, label names.

Every link of the chain (ExampleGen, schema, Transform, Trainer, serving, clients)
reads these names from here, so the contract lives in one place.
"""
from typing import Tuple

IMAGE_SIZE: int = 48
NUM_PIXELS: int = IMAGE_SIZE * IMAGE_SIZE  # 2304
IMAGE_SHAPE: Tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)

# Raw tf.Example features written by fer2013_example_gen.
PIXELS_KEY = "pixels"  # int64 x 2304, 0..255, row-major 48x48 grayscale
LABEL_KEY = "emotion"  # int64, 0..6

# Transformed features written by Transform.
IMAGE_XF_KEY = "image_xf"  # float32 [48, 48, 1], z-score normalised
LABEL_XF_KEY = LABEL_KEY  # the label passes through Transform unchanged

EMOTIONS: Tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES: int = len(EMOTIONS)

# fer2013 `Usage` column -> TFX split name.
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "eval", "PrivateTest": "test"}
SPLITS: Tuple[str, ...] = ("train", "eval", "test")

# Serving contract (both signatures return the same outputs).
SERVING_DEFAULT_SIGNATURE = "serving_default"  # input: serialized tf.Example
SERVING_IMAGES_SIGNATURE = "serving_images"  # input: encoded image bytes (PNG/JPEG/BMP/GIF)
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
PROBABILITIES_OUTPUT = "probabilities"  # float32 [N, 7]
CLASS_ID_OUTPUT = "class_id"  # int64 [N]
CLASS_NAME_OUTPUT = "class_name"  # string [N]

# Bounds on one image sent to the serving_images signature, checked from its header before
# anything is decoded (components/image_header.py), in TF Serving and the dev server alike.
# A 4096x4096 RGB image decodes to 48 MiB; animated images are refused (one frame only);
# a request decodes at most as many pixels as one such image (e.g. 1,024 faces of 128x128).
MAX_IMAGE_BYTES = 10 * 2 ** 20
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_FRAMES = 1
MAX_REQUEST_PIXELS = MAX_IMAGE_SIDE ** 2
# GIF blocks read to find every frame (~4 MiB of full 255-byte data sub-blocks): the header
# walk costs well under a second whatever the file holds.
MAX_GIF_BLOCKS = 16_384
