"""Regenerate keda-scaledobject-v1alpha1.schema.json (not run by the tests).

The schema comes from the pydantic models that the PyPI package ``cloudcoil-models-keda``
generates from KEDA's CustomResourceDefinitions (version 2.16.1.0 = KEDA v2.16.1):

    python -m venv /tmp/keda && /tmp/keda/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda/bin/python tests/schemas/make_keda_scaledobject_schema.py

Only the ScaledObject's ``spec`` is taken (metadata is checked by kubectl/kustomize), and every
object is made closed (``additionalProperties: false``), like ``kubectl --validate=strict``:
a misspelt field fails instead of being dropped by the API server.
"""

from __future__ import annotations

import json
from pathlib import Path

OUTPUT = Path(__file__).with_name("keda-scaledobject-v1alpha1.schema.json")


def closed(node):
    if isinstance(node, dict):
        node = {key: closed(value) for key, value in node.items() if key not in ("title", "default")}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [closed(item) for item in node]
    return node


def main() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObjectSpec

    spec = closed(ScaledObjectSpec.model_json_schema(by_alias=True, mode="validation"))
    definitions = spec.pop("$defs")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "keda.sh/v1alpha1 ScaledObject (KEDA v2.16.1 CRD via cloudcoil-models-keda 2.16.1.0); "
        "regenerate with tests/schemas/make_keda_scaledobject_schema.py",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        "$defs": definitions,
    }
    OUTPUT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
