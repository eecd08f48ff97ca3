import sys

from .memory import keep_freed_memory

keep_freed_memory()  # before the run allocates anything large

from .run import main  # noqa: E402

sys.exit(main())
