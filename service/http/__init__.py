"""The HTTP layer: the FastAPI app, its routes, the error shape and the one place queue and image
errors become statuses and metric outcomes, API keys, uploads, security headers and the
hardened uvicorn protocol. The only layer that imports FastAPI."""
