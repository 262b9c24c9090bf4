"""Exit 0 when PostgreSQL answers at the URL given (used by `make test`)."""

import sys

try:
    import psycopg

    with psycopg.connect(sys.argv[1].replace("postgres://", "postgresql://", 1), connect_timeout=3):
        pass
except Exception:  # any failure means: not available here
    sys.exit(1)
