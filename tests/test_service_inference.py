"""Release manifest checks and the ONNX Runtime runner (provider choice, padding, batches)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from service_helpers import build_fixture_release

from portraitsr.manifest import ManifestError, load_manifest
from portraitsr.runtimes import CUDA, REFERENCE, RuntimeRequest
from service.core.inference import ModelRunner, load_runners


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return build_fixture_release(tmp_path_factory.mktemp("release"))


def test_manifest_is_read_and_checked(manifest, tmp_path):
    specs = load_manifest(manifest)
    assert sorted(spec.scale for spec in specs) == [4, 8]
    assert all(spec.onnx_path.is_file() and spec.input_name == "lr" for spec in specs)

    document = json.loads(manifest.read_text())
    document["models"][0]["sha256"] = "0" * 64
    broken = manifest.parent / "broken.json"
    broken.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(broken)
    del document["models"][0]["output"]
    broken.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="lacks output"):
        load_manifest(broken)
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path / "missing.json")


def test_runner_batches_and_pads_odd_sizes(manifest):
    runners = load_runners(load_manifest(manifest), REFERENCE.with_threads(1))
    rng = np.random.default_rng(0)
    batch = rng.random((3, 3, 16, 16), dtype=np.float32)
    out = runners[8, "clean"].run(batch)
    assert out.shape == (3, 3, 128, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out[1:2], runners[8, "clean"].run(batch[1:2]), atol=1e-6)  # batching changes nothing
    odd = rng.random((1, 3, 7, 5), dtype=np.float32)
    assert runners[4, "clean"].input_multiple == 2
    assert runners[4, "clean"].run(odd).shape == (1, 3, 28, 20)


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_falls_back_to_cpu_and_says_so(manifest):
    spec = load_manifest(manifest)[0]
    runner = ModelRunner(spec, RuntimeRequest("onnxruntime", device="cuda", threads=1))
    assert runner.provider == "CPUExecutionProvider"
    assert "CUDA" in runner.fallback_reason
    # auto on a CPU machine is no fallback
    assert ModelRunner(spec, RuntimeRequest("onnxruntime", threads=1)).fallback_reason is None
