"""``python -m depstrace`` is the ``depstrace`` command."""

from __future__ import annotations

import sys

from depstrace.cli import main

sys.exit(main())
