"""``python -m nnx info``: see :mod:`nnx.info`."""

import sys

from nnx.info import main

sys.exit(main())
