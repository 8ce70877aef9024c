"""``python -m jloss demo ...``: the same as the ``jloss`` console script."""

import sys

from jloss.cli import main

sys.exit(main())
