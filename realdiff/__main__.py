import sys

from realdiff.cli import main

sys.exit(main())
