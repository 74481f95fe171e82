"""``python -m app`` is ``segrefiner-studio``."""
import sys

from app.main import main

sys.exit(main())
