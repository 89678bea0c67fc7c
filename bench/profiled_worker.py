"""`glassbox worker` under cProfile (bench/latency.py --profile): its main thread, where jobs run,
profiled from the first SIGUSR1 on (after the benchmark's warm-up: imports and first loads left
out), the stats written to the file named by the first argument when it stops (SIGTERM).

    python -m bench.profiled_worker worker.prof

`glassbox worker` itself ends with os._exit (tearing torch down would cost seconds), which
would lose the profile: here the stats are written first.
"""

from __future__ import annotations

import cProfile
import logging
import os
import signal
import sys

from service.settings import Settings
from worker.main import run_worker


def main() -> None:
    profiler = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda signum, frame: profiler.enable())
    code = run_worker(Settings())
    profiler.disable()
    profiler.dump_stats(sys.argv[1])
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
