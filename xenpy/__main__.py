"""``python -m xenpy``: the ``xenpy`` command."""

import sys

from xenpy.cli.main import main

sys.exit(main())
