"""`python -m services.eval`: see services/eval/run.py."""

from services.eval.run import main

raise SystemExit(main())
