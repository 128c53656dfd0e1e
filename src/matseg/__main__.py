import sys

from matseg.cli import main

sys.exit(main())
