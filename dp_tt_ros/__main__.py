"""``python -m dp_tt_ros`` is the same as the ``dp-tt-ros`` console script."""

import sys

from dp_tt_ros.cli import main

sys.exit(main())
