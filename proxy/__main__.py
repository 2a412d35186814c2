import sys

from cutover.cli.main import main

sys.exit(main())
