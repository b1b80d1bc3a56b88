"""edgeship: a Keras CNN from training to a validated int8 model on an MCU or a phone.

tensorflow-model-optimization only works with Keras 2, so the one import-time side effect
allowed in this package is asking TensorFlow to use tf_keras before it is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
