"""The manifest's model variants: one model per (scale, variant), written and read through one home."""

from __future__ import annotations

import json

import pytest
from service_helpers import build_fixture_model

from portraitsr.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ModelVariant,
    load_manifest,
    model_entry,
    update_manifest,
)
from training.export import trained_variant


def release_with(tmp_path, slots):
    manifest = tmp_path / MANIFEST_NAME
    for name, scale, variant in slots:
        onnx = tmp_path / f"{name}.onnx"
        build_fixture_model(onnx, scale)
        update_manifest(manifest, model_entry(name, scale, onnx, tmp_path, variant))
    return manifest


def test_a_clean_and_a_real_model_per_scale_are_read_back_with_their_variant(tmp_path):
    manifest = release_with(tmp_path, [("c4", 4, "clean"), ("r4", 4, "real"), ("c8", 8, "clean"), ("r8", 8, "real")])
    specs = {(spec.scale, spec.variant): spec.name for spec in load_manifest(manifest)}
    assert specs == {(4, ModelVariant.CLEAN): "c4", (4, ModelVariant.REAL): "r4",
                     (8, ModelVariant.CLEAN): "c8", (8, ModelVariant.REAL): "r8"}  # fmt: skip
    # A new real ×4 replaces the real ×4 only.
    onnx = tmp_path / "r4b.onnx"
    build_fixture_model(onnx, 4)
    assert update_manifest(manifest, model_entry("r4b", 4, onnx, tmp_path, "real")) == ["r4"]
    assert sorted(spec.name for spec in load_manifest(manifest)) == ["c4", "c8", "r4b", "r8"]


def test_an_entry_without_a_variant_is_clean_and_an_unknown_variant_is_refused(tmp_path):
    manifest = release_with(tmp_path, [("c4", 4, "clean")])
    document = json.loads(manifest.read_text())
    del document["models"][0]["variant"]
    manifest.write_text(json.dumps(document))
    assert load_manifest(manifest)[0].variant is ModelVariant.CLEAN
    document["models"][0]["variant"] = "vintage"
    manifest.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="variant 'vintage'"):
        load_manifest(manifest)
    document["models"][0]["variant"] = "clean"
    document["models"].append(dict(document["models"][0], name="twin"))
    manifest.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="per scale and variant"):
        load_manifest(manifest)


def test_the_export_names_the_variant_from_the_training_config():
    assert trained_variant({"data": {"degradation": {"enabled": False}}}) == (ModelVariant.CLEAN, None)
    variant, settings = trained_variant({"data": {"degradation": {"enabled": True, "clean_share": 0.2}}})
    assert variant is ModelVariant.REAL and settings["clean_share"] == 0.2


def test_the_shipped_manifest_names_a_variant_on_every_model():
    from service.core.settings import DEFAULT_MANIFEST

    entries = json.loads(DEFAULT_MANIFEST.read_text())["models"]
    assert all(entry["variant"] in ("clean", "real") for entry in entries)
    real = [entry for entry in entries if entry["variant"] == "real"]
    assert all(entry["degradation"]["enabled"] for entry in real)
