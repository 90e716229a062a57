"""Typed settings of the service: environment variables ``PORTRAITSR_*`` (or a YAML file).

One object for API, workers and ``portraitsr serve``, so the deployment files and the code agree
on names. ``PORTRAITSR_REDIS_URL=redis://host:6379/0`` makes ``serve`` use that Redis instead of
starting its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from portraitsr.config_loading import check_keys, read_yaml
from portraitsr.runtimes import RuntimeRequest, RuntimeUnavailable, check_request, default_cache_dir

# model/release/manifest.json, found from this file so it works from any working directory
# (editable install or source checkout).
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "model" / "release" / "manifest.json"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTRAITSR_", extra="ignore")

    # Queue ------------------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="Redis to use; unset: `serve` starts a private redis-server, api/worker use localhost"
    )
    redis_password_file: Path | None = Field(
        None, description="file holding the Redis password (a mounted Secret); the user name goes in redis_url"
    )
    stream: str = "portraitsr:jobs"
    consumer_group: str = "portraitsr-workers"
    dead_letter_stream: str = "portraitsr:dead-letter"
    key_prefix: str = Field("portraitsr", description="prefix of heartbeat, reply and stats keys")
    queue_max_length: int = Field(256, ge=1, description="jobs waiting or in flight before 429")
    job_deadline_s: float = Field(30.0, gt=0, description="a job not answered by then gets 504")
    claim_idle_ms: int = Field(5000, ge=1, description="a job pending this long on a dead worker is claimed")
    max_deliveries: int = Field(3, ge=1, description="deliveries before a job goes to the dead-letter stream")
    result_ttl_s: int = Field(60, ge=1, description="an unread reply stream expires after this")
    heartbeat_ttl_s: float = Field(5.0, gt=0, description="a worker whose heartbeat is older is dead")
    admission_fraction: float = Field(
        0.5, gt=0, le=1,
        description="admitted model seconds (measured by the workers) may fill this share of workers × job_deadline_s; "
        "more gets 429",
    )
    redis_max_connections: int = Field(
        32, ge=1, description="API connections for jobs; a request waits for one, and past that gets 429"
    )
    redis_outage_grace_s: float = Field(
        15.0, gt=0, description="waiting requests get 503 once Redis has been unreachable this long"
    )

    # Model and inference ---------------------------------------------------------------------
    manifest_path: Path = DEFAULT_MANIFEST
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto", description="inference runtime; auto: ONNX Runtime on a CUDA GPU, else OpenVINO (docs/service.md)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 where OpenVINO runs on a CPU with AVX-512 BF16 or AMX, else fp32"
    )
    execution_provider: Literal["auto", "cuda", "cpu"] = Field("auto", description="device; cuda needs onnxruntime-gpu")
    intra_op_threads: int = Field(0, ge=0, description="inference threads per model run; 0 = number of cores")
    openvino_cache_dir: Path | None = Field(
        None, description="OpenVINO's compiled-model cache (fast worker start); unset: ~/.cache/portraitsr/openvino"
    )
    max_batch_size: int = Field(8, ge=1)
    max_batch_output_pixels: int = Field(
        8 * 128 * 128, ge=1,
        description="a batch's output pixels stay within this (a larger input runs alone): bounds worker memory",
    )
    max_batch_wait_ms: float = Field(
        0.0, ge=0, description="how long an idle worker waits to fill a batch (a busy one batches what queued meanwhile)"
    )

    # Input limits ------------------------------------------------------------------------------
    max_upload_bytes: int = Field(4 * 1024 * 1024, ge=1, description="larger bodies get 413")
    max_input_pixels: int = Field(
        512 * 512, ge=1, description="header-declared pixels above this get 413 before decoding"
    )
    max_input_side: int = Field(512, ge=1, description="input width or height above this gets 413")
    max_output_side: int = Field(
        512, ge=1, description="scale × input side above this gets 413: 64 px inputs at ×8, 128 px at ×4 (faces)"
    )
    min_input_side: int = Field(1, ge=1, description="input width or height below this gets 400")

    # Whole photos (POST /restore) -------------------------------------------------------------
    restore_max_input_side: int = Field(1024, ge=1, description="/restore: photo width or height above this gets 413")
    restore_max_input_pixels: int = Field(
        1024 * 1024, ge=1, description="/restore: header-declared pixels above this get 413 before decoding"
    )
    restore_max_output_side: int = Field(4096, ge=1, description="/restore: scale × photo side above this gets 413")
    restore_max_faces: int = Field(32, ge=0, description="/restore: faces restored per photo (best scores first)")
    restore_min_inter_ocular: float = Field(
        2.0, ge=0, description="/restore: faces with eyes closer than this (photo pixels) stay as the upscaled photo"
    )
    restore_min_score: float = Field(
        0.9, ge=0, le=1, description="/restore: detections scoring lower stay as the upscaled photo"
    )
    detector_min_face_px: float = Field(10.0, gt=0, description="/restore: smallest face box the detector searches")

    # Security --------------------------------------------------------------------------------
    api_keys_file: Path | None = Field(
        None, description="file of SHA-256 hex digests of accepted API keys, one a line; set: image endpoints "
        "and /metrics need `Authorization: Bearer <key>` (`portraitsr hash-key` prints a digest)"
    )

    # Processes -------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    http_header_timeout_s: float = Field(15.0, gt=0, le=30, description="the request head must arrive within this, else 408")
    http_body_timeout_s: float = Field(30.0, gt=0, description="a request body stalled this long closes the connection")
    http_max_header_bytes: int = Field(16 * 1024, ge=1024, description="a larger request head gets 431")
    http_max_connections: int = Field(1000, ge=1, description="open connections past this get 429 at once")
    worker_metrics_host: str = "0.0.0.0"
    worker_metrics_port: int = 9100
    workers: int = Field(1, ge=1, description="worker processes started by `serve`")
    redis_port: int = Field(0, ge=0, description="port of the private redis-server of `serve`; 0 = free port")
    redis_dir: Path | None = Field(
        None, description="data directory (AOF) of the private redis-server of `serve`; unset: "
        "$XDG_STATE_HOME/portraitsr/serve-<api_port> (~/.local/state/...), so a restart on the same port resumes its queue"
    )
    api_drain_s: float | None = Field(
        None, gt=0, description="on SIGTERM the API lets requests in flight finish for this long, then answers 503; "
        "unset: job_deadline_s + 1 (`serve`: 6, so that it stops within 10 s)"
    )

    @model_validator(mode="after")
    def _runtime_is_installed(self) -> ServiceSettings:
        """A runtime named and not installed is refused when the settings load, not at the first job."""
        try:
            check_request(self.runtime_request())
        except RuntimeUnavailable as error:
            raise ValueError(f"{error} (PORTRAITSR_RUNTIME, PORTRAITSR_PRECISION, PORTRAITSR_EXECUTION_PROVIDER)") from None
        return self

    def runtime_request(self, threads: int | None = None, device: str | None = None) -> RuntimeRequest:
        """The runtime these settings ask for (``threads``, ``device``: overrides, as for the API's face detector)."""
        return RuntimeRequest(
            runtime=self.runtime,
            precision=self.precision,
            device=device or self.execution_provider,
            threads=self.intra_op_threads if threads is None else threads,
            cache_dir=self.openvino_cache_dir or default_cache_dir(),
        )


def effective_api_drain_s(settings: ServiceSettings) -> float:
    """How long the API drains on SIGTERM: ``api_drain_s``, else until any job admitted could end."""
    return settings.api_drain_s if settings.api_drain_s is not None else settings.job_deadline_s + 1


def load_settings(yaml_path: str | Path | None = None, **overrides) -> ServiceSettings:
    """Settings from the environment, overridden by a YAML file's keys, then by ``overrides``.

    The environment may hold other ``PORTRAITSR_*`` variables (a client's key), so the model
    ignores extra names; a YAML file is the service's own, so an unknown key in it is an error.
    """
    values: dict = {}
    if yaml_path is not None:
        values.update(read_yaml(yaml_path))
        check_keys(values, ServiceSettings.model_fields, Path(yaml_path).name)
    values.update({key: value for key, value in overrides.items() if value is not None})
    return ServiceSettings(**values)
