"""The naive baseline: the same model called inside the request handler. No queue, no batching.

Same decoding, encoding, runtime and precision as the service (``--runtime``, ``--precision``), so
the difference measured is the serving architecture only. FastAPI runs the sync handler in its thread pool, so concurrent
requests run the model concurrently, one image each.

    python -m benchmarks.naive_server --manifest model/release/manifest.json --port 8001
"""

import argparse
import sys
from pathlib import Path


def create_app(manifest: Path, runtime):
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from portraitsr.manifest import load_manifest
    from service.core.images import OUTPUT_FORMATS, ImageInputError, decode_image, encode_image
    from service.core.inference import ModelRunner, upscale
    from service.http.errors import IMAGE_STATUS

    runners = {spec.scale: ModelRunner(spec, runtime) for spec in load_manifest(manifest) if spec.variant == "clean"}
    app = FastAPI(title="PortraitSR naive baseline")

    @app.get("/readyz")
    def readyz() -> dict:
        return {"ready": True}

    @app.post("/upscale")
    async def upscale_raw(request: Request, scale: int = 8, format: str = "png") -> Response:
        data = await request.body()

        def work() -> bytes:
            return encode_image(upscale(runners[scale], decode_image(data)), format)

        try:
            body = await run_in_threadpool(work)
        except ImageInputError as error:
            return JSONResponse({"error": error.code, "detail": error.reason}, status_code=IMAGE_STATUS[error.problem])
        return Response(body, media_type=OUTPUT_FORMATS[format])

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="naive baseline server (model in the request handler)")
    parser.add_argument("--manifest", type=Path, default=Path("model/release/manifest.json"))
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    args = parser.parse_args(argv)
    from portraitsr.runtimes import RuntimeRequest

    runtime = RuntimeRequest(args.runtime, args.precision, "cpu", args.intra_op_threads)
    uvicorn.run(create_app(args.manifest, runtime), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
