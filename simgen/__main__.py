import sys

from simgen.cli import main

sys.exit(main())
