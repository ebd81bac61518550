"""Command-line tools: ``soundnet-classify`` (objects and scenes over time) and ``soundnet-extract`` (features).

Both take audio files and folders, report a bad file on one line and go on with the others, and exit non-zero if
any file failed. Helpers shared by the tools live in :mod:`soundnet_keras.cli.common`.
"""

import os

# TensorFlow reads this when it is first imported; keep its C++ INFO/WARNING lines away from users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
