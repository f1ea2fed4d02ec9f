"""``python -m pipeline.cli``: the ``plexus`` command."""

import sys

from . import main

sys.exit(main())
