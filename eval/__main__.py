"""`python -m eval`: see eval/run.py."""

from eval.run import main

raise SystemExit(main())
