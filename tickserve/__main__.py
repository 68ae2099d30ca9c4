import sys

from tickserve.cli import main

sys.exit(main())
