"""``python -m app`` is ``segrefiner-studio``."""
import sys

from app.cli import main

sys.exit(main())
