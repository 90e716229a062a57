"""Container health check: GET /readyz of this container's API or worker, exit 0 when it answers 200.

Ports come from the service's own settings (environment ``PORTRAITSR_*``), so a changed port
changes the probe too. Used by the images' HEALTHCHECK, which docker compose's
``depends_on: condition: service_healthy`` waits for.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    from service.core.settings import ServiceSettings

    role = argv[1] if len(argv) > 1 else ""
    settings = ServiceSettings()
    ports = {"api": settings.api_port, "worker": settings.worker_metrics_port}
    if role not in ports:
        print("usage: portraitsr-healthcheck api|worker", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[role]}/readyz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{role} not ready: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
