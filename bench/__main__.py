"""`python -m bench`: see bench/run.py."""

from bench.run import main

# Guarded: the quick run's soak is a spawned process, which imports this module again as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
