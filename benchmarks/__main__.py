"""``python -m benchmarks [layer|model|gpu|profile] [options]`` from the repository root."""
import sys

from benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
