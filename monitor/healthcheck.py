"""The container's health check: ``python -m monitor.healthcheck [URL]``.

Exit 0 when the daemon's ``/healthz`` answers 200, else 1 with the reasons it gave. Docker
runs it every 30 seconds, so it imports nothing but the standard library (importing
`monitor.service` would load the storage layer, NumPy and prometheus_client each time).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/healthz"


def probe(url: str, timeout: float = 8.0) -> int:
    """0 when ``url`` answers 200, else 1 with the reason on stderr."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return 0
    except urllib.error.HTTPError as error:
        try:
            reasons = json.loads(error.read()).get("reasons") or [str(error)]
        except ValueError:
            reasons = [str(error)]
        print(f"unhealthy: {'; '.join(reasons)}", file=sys.stderr)
    except OSError as error:
        print(f"unreachable: {url}: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(probe(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL))
