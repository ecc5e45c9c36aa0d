"""Data-loading benchmark, same as ``jepa bench data`` / ``make bench``.

Run:  python tools/bench_data.py --videos 96 --workers 2
"""

import sys

from jepa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "data", *sys.argv[1:]]))
