import sys

from ocrheads.cli import main

sys.exit(main())
