import sys

from w3gate.cli import main

sys.exit(main())
