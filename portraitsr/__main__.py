import sys

from portraitsr.cli import main

sys.exit(main())
