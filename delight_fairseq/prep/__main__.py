"""``python -m delight_fairseq.prep BENCHMARK [options]``; see ``cli``."""

import sys

from .cli import main, setup_logging

setup_logging()
sys.exit(main())
