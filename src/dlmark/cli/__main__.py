"""``python -m dlmark.cli``: the same as the ``dlmark`` command."""
import sys

from dlmark.cli import main

sys.exit(main())
