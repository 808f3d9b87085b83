"""Run `monitor` under cProfile, the pipeline's worker thread included.

    python bench/profiled.py OUT.prof -- --config FILE poll --json

cProfile only sees the thread that enabled it, and `monitor poll` parses, judges and
writes on a worker thread; this profiles the main thread into OUT.prof and every call
run on the worker into OUT.worker.prof (`bench/poll_cycle.py --profile` uses it).
"""

from __future__ import annotations

import cProfile
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    out = Path(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1 :]
    worker = cProfile.Profile()

    class ProfiledExecutor(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *a: Any, **kw: Any) -> Future[Any]:
            return super().submit(worker.runcall, fn, *a, **kw)

    from monitor import cli, pipeline

    pipeline.ThreadPoolExecutor = ProfiledExecutor  # type: ignore[misc]
    main_profile = cProfile.Profile()
    code = 0
    try:
        main_profile.runcall(cli.main, args, standalone_mode=False)
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        main_profile.dump_stats(str(out))
        worker.dump_stats(str(out.with_suffix(".worker.prof")))
    return code


if __name__ == "__main__":
    sys.exit(main())
