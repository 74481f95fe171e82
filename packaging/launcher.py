"""The bundle's entry script: ``segrefiner-studio`` as installed by pip (app/main.py)."""
import sys

from app.main import main

sys.exit(main())
