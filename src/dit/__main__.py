"""``python -m dit`` is the same as the ``dit`` command."""

import sys

from dit.cli.main import main

sys.exit(main())
