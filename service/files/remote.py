"""Send image files to a running service (``portraitsr upscale|restore --url``) instead of running the models here.

Standard library only (the service image has no HTTP client package). At most ``concurrency``
requests are in flight; a 429 is retried after its ``Retry-After`` (at most ``max_retries`` times);
the key, when given, goes as ``Authorization: Bearer``. Outputs are named as the in-process
commands name them.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from service.files.upscale import (
    InputFile,
    UpscaleOptions,
    UpscaleReport,
    find_name_clashes,
    output_format_for,
    output_path_for,
)

MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class RemoteOptions:
    url: str  # the service's base URL, e.g. http://127.0.0.1:8000
    endpoint: str  # "upscale" or "restore"
    scale: int
    output_dir: Path
    model: str = "auto"  # sent as ``model=``: the service decides ``auto``
    output_format: str | None = None
    key: str | None = None
    concurrency: int = 4
    max_retries: int = 5
    timeout_s: float = 120.0


@dataclass
class RemoteAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class RemoteError(Exception):
    pass


def retry_after_seconds(headers: dict[str, str]) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds form); 1 when absent or unreadable."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def error_reason(answer: RemoteAnswer) -> str:
    try:
        body = json.loads(answer.body)
        return f"{answer.status} {body.get('error', '')}: {body.get('detail', '')}".strip()
    except (ValueError, AttributeError):
        return f"{answer.status}: {answer.body[:200].decode('utf-8', 'replace')}"


def post(url: str, data: bytes, key: str | None, timeout_s: float) -> RemoteAnswer:
    headers = {"Content-Type": "application/octet-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return RemoteAnswer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return RemoteAnswer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
    except (urllib.error.URLError, OSError) as error:
        raise RemoteError(f"cannot reach {url}: {getattr(error, 'reason', error)}") from error


def send_one(item: InputFile, options: RemoteOptions, sleep: Callable[[float], None] = time.sleep) -> RemoteAnswer:
    output_format = output_format_for(item.path, options.output_format)
    query = urllib.parse.urlencode({"scale": options.scale, "format": output_format, "model": options.model})
    url = f"{options.url.rstrip('/')}/{options.endpoint}?{query}"
    data = item.path.read_bytes()
    for _ in range(options.max_retries + 1):
        answer = post(url, data, options.key, options.timeout_s)
        if answer.status != 429:
            return answer
        sleep(retry_after_seconds(answer.headers))
    return answer


def send_files(
    inputs: list[InputFile],
    options: RemoteOptions,
    report: UpscaleReport,
    on_message: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    on_result: Callable[[InputFile, RemoteAnswer], None] = lambda item, answer: None,
) -> UpscaleReport:
    """Send every input, ``options.concurrency`` at a time; write the answers, report the failures."""
    naming = UpscaleOptions(output_dir=options.output_dir, output_format=options.output_format)
    clashes = find_name_clashes(inputs, naming)

    def fail(item: InputFile, reason: str) -> None:
        report.failed.append((item.path, reason))
        on_message(f"skipped {item.path}: {reason}")

    def work(item: InputFile) -> tuple[InputFile, RemoteAnswer | None, str | None]:
        try:
            return item, send_one(item, options), None
        except (RemoteError, OSError) as error:
            return item, None, str(error)

    todo = [item for item in inputs if item.path not in clashes]
    for item in inputs:
        if item.path in clashes:
            fail(item, clashes[item.path])
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        for item, answer, problem in pool.map(work, todo):
            if problem is not None:
                fail(item, problem)
            elif answer.status != 200:
                fail(item, error_reason(answer))
            else:
                destination = output_path_for(item, naming)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(answer.body)
                report.written.append(destination)
                on_result(item, answer)
    return report
