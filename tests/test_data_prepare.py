"""prepare-data and FaceDataset on generated faces (no research data, no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from portraitsr.cli import main
from training.data.dataset import FaceDataset
from training.data.degrade import bicubic_downsample
from training.data.framing import load_framing_config
from training.data.parsing import COMPACT_CLASSES, compact_from_celebamask
from training.data.sources import DatasetSpec, discover_records

# CelebAMask-HQ ids
SKIN, NOSE, GLASSES, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR = 1, 2, 3, 4, 5, 6, 7, 8, 9
MOUTH, U_LIP, L_LIP, HAIR, HAT, EARRING, NECKLACE, NECK, CLOTH = 10, 11, 12, 13, 14, 15, 16, 17, 18
PALETTE = [value for i in range(256) for value in ((i * 13) % 256, (i * 71) % 256, (i * 151) % 256)]
COMPACT = {name: i for i, name in enumerate(COMPACT_CLASSES)}


def draw_face(side: int, eye_mid: tuple[float, float], inter_ocular: float, mouth: tuple[float, float], seed: int):
    """A face image and its CelebAMask-HQ id mask, eyes and mouth centred where asked (px)."""
    rng = np.random.default_rng(seed)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    u = inter_ocular  # face parts are drawn in units of the inter-ocular distance
    ex, ey = eye_mid
    draw.rectangle((ex - 1.2 * u, ey + 1.6 * u, ex + 1.2 * u, side), fill=CLOTH)
    draw.rectangle((ex - 0.5 * u, ey + 1.0 * u, ex + 0.5 * u, ey + 1.8 * u), fill=NECK)
    draw.rectangle((ex - 0.5 * u, ey + 1.5 * u, ex + 0.5 * u, ey + 1.6 * u), fill=NECKLACE)
    draw.ellipse((ex - 1.2 * u, ey - 1.4 * u, ex + 1.2 * u, ey + 1.0 * u), fill=HAIR)
    draw.rectangle((ex - 1.0 * u, ey - 1.6 * u, ex + 1.0 * u, ey - 1.3 * u), fill=HAT)
    draw.ellipse((ex - 1.05 * u, ey - 0.2 * u, ex - 0.85 * u, ey + 0.3 * u), fill=L_EAR)
    draw.ellipse((ex + 0.85 * u, ey - 0.2 * u, ex + 1.05 * u, ey + 0.3 * u), fill=R_EAR)
    draw.ellipse((ex - 1.0 * u, ey + 0.25 * u, ex - 0.92 * u, ey + 0.35 * u), fill=EARRING)
    draw.ellipse((ex - 0.85 * u, ey - 0.9 * u, ex + 0.85 * u, ey + 1.4 * u), fill=SKIN)
    draw.rectangle((ex - 0.75 * u, ey - 0.45 * u, ex - 0.25 * u, ey - 0.35 * u), fill=L_BROW)
    draw.rectangle((ex + 0.25 * u, ey - 0.45 * u, ex + 0.75 * u, ey - 0.35 * u), fill=R_BROW)
    for centre, label in ((ex - u / 2, L_EYE), (ex + u / 2, R_EYE)):
        draw.ellipse((centre - 0.2 * u, ey - 0.1 * u, centre + 0.2 * u, ey + 0.1 * u), fill=label)
    draw.polygon([(ex, ey + 0.1 * u), (ex - 0.15 * u, ey + 0.6 * u), (ex + 0.15 * u, ey + 0.6 * u)], fill=NOSE)
    mx, my = mouth
    draw.rectangle((mx - 0.35 * u, my - 0.12 * u, mx + 0.35 * u, my), fill=U_LIP)
    draw.rectangle((mx - 0.35 * u, my, mx + 0.35 * u, my + 0.12 * u), fill=L_LIP)
    draw.rectangle((mx - 0.25 * u, my - 0.03 * u, mx + 0.25 * u, my + 0.03 * u), fill=MOUTH)
    ids = np.asarray(mask)
    colours = rng.integers(30, 230, size=(19, 3)).astype(np.uint8)
    colours[SKIN] = (224, 172, 140)
    rgb = colours[ids] + rng.integers(0, 12, size=(side, side, 3)).astype(np.uint8)
    palette_mask = Image.frombytes("P", (side, side), np.ascontiguousarray(ids).tobytes())
    palette_mask.putpalette(PALETTE)  # like CelebAMask-HQ: an 8-bit palette PNG of class ids
    return Image.fromarray(rgb), ids, palette_mask


def preset_face(preset: str, side: int, seed: int):
    landmarks = load_framing_config().presets[preset].landmarks
    unit = side / 128
    return draw_face(
        side,
        (landmarks.eye_mid[0] * unit, landmarks.eye_mid[1] * unit),
        landmarks.inter_ocular * unit,
        (landmarks.mouth[0] * unit, landmarks.mouth[1] * unit),
        seed,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """celeba-like 512-px faces with palette masks, utkface-like 200-px faces without, a corrupt image
    and a corrupt mask."""
    root = tmp_path_factory.mktemp("source")
    (root / "celeb/images").mkdir(parents=True)
    (root / "celeb/masks").mkdir(parents=True)
    (root / "utk").mkdir()
    for i in range(8):
        image, _, mask = preset_face("celeba-hq", 512, seed=i)
        image.save(root / f"celeb/images/face{i:02d}.jpg", quality=95)
        mask.save(root / f"celeb/masks/face{i:02d}.png")
    for i in range(5):
        image, _, _ = preset_face("utkface", 200, seed=100 + i)
        image.save(root / f"utk/{i:02d}.jpg.chip.jpg", quality=95)
    (root / "utk/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    image, _, _ = preset_face("celeba-hq", 512, seed=8)
    image.save(root / "celeb/images/face08.jpg", quality=95)
    (root / "celeb/masks/face08.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    config = {
        "seed": 0,
        "scales": [4, 8],
        "datasets": [
            {"name": "celeb", "images": "celeb/images", "masks": "celeb/masks", "framing": "celeba-hq", "val_count": 2},
            {"name": "utk", "images": "utk", "framing": "utkface", "val_count": 1},
        ],
        "parser": {"epochs": 1, "max_steps": 2, "batch_size": 4, "channels": [4, 8], "threads": 1},
    }
    (root / "prepare.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def cache(source: Path, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cache") / "faces"
    import contextlib
    import io

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = main(
            ["prepare-data", "--source", str(source), "--out", str(out), "--config", str(source / "prepare.yaml"),
             "--no-progress"]
        )
    assert code == 0
    return out, errors.getvalue()


def test_compact_mapping_of_every_celebamask_id():
    expected = {
        0: "background", 16: "background", 18: "background",
        1: "skin", 8: "skin", 9: "skin", 15: "skin", 17: "skin",
        6: "brows", 7: "brows", 3: "eyes", 4: "eyes", 5: "eyes", 2: "nose",
        10: "mouth", 11: "mouth", 12: "mouth", 13: "hair", 14: "hair",
    }
    ids = np.arange(19, dtype=np.uint8)
    mapped = compact_from_celebamask(ids)
    assert [COMPACT_CLASSES[c] for c in mapped] == [expected[i] for i in range(19)]


@pytest.mark.parametrize(("preset", "side"), [("celeba-hq", 512), ("utkface", 200), ("celeba-hq", 1024)])
def test_framing_puts_the_mean_eye_midpoint_at_the_benchmark_position(preset, side):
    config = load_framing_config()
    landmarks = config.presets[preset].landmarks
    framer = config.framer(preset)
    image = np.zeros((side, side, 3), dtype=np.uint8)
    x, y = (v * side / 128 for v in landmarks.eye_mid)
    radius = side // 100 + 1
    image[int(y) - radius : int(y) + radius, int(x) - radius : int(x) + radius] = 255
    framed = framer.frame_image(Image.fromarray(image)).astype(float).sum(axis=2)
    assert framed.shape == (128, 128)
    weights = framed / framed.sum()
    ys, xs = np.mgrid[0:128, 0:128] + 0.5
    centroid = ((weights * xs).sum(), (weights * ys).sum())
    expected = framer.map_point(int(x), int(y), side)
    assert centroid == pytest.approx(expected, abs=0.75)
    # The least-squares fit over eyes and mouth lands the eye midpoint within 1.5 px of Helen's.
    assert np.hypot(centroid[0] - config.target.eye_mid[0], centroid[1] - config.target.eye_mid[1]) < 1.5


def test_framing_pads_where_the_crop_leaves_the_image():
    framer = load_framing_config().framer("utkface")
    left, top, right, bottom = framer.crop_box(200)
    assert left < 0 and right > 200  # UTKFace faces are larger than Helen's
    image = np.full((200, 200, 3), 200, dtype=np.uint8)
    framed = framer.frame_image(Image.fromarray(image))
    assert framed.min() == 200  # reflect padding: no black border


def test_cache_layout_and_dtypes(cache):
    out, _ = cache
    hr = np.load(out / "hr.npy")
    parsing = np.load(out / "parsing.npy")
    index = json.loads((out / "index.json").read_text())
    assert hr.dtype == np.uint8 and hr.shape == (13, 128, 128, 3)
    assert parsing.dtype == np.uint8 and parsing.shape == (13, 128, 128)
    assert parsing.max() < len(COMPACT_CLASSES)
    for scale in (4, 8):
        lr = np.load(out / f"lr_x{scale}.npy")
        assert lr.dtype == np.uint8 and lr.shape == (13, 128 // scale, 128 // scale, 3)
        # The evaluation protocol: Pillow bicubic of the uint8 HR image.
        reference = np.asarray(Image.fromarray(hr[3]).resize((128 // scale, 128 // scale), Image.BICUBIC))
        assert np.array_equal(lr[3], reference)
    assert [entry["row"] for entry in index] == list(range(13))
    assert {entry["dataset"] for entry in index} == {"celeb", "utk"}
    celeb = [entry for entry in index if entry["dataset"] == "celeb"]
    utk = [entry for entry in index if entry["dataset"] == "utk"]
    assert all(entry["parsing"] == "mask" for entry in celeb) and len(celeb) == 8
    assert all(entry["parsing"] == "predicted" for entry in utk) and len(utk) == 5
    assert sum(entry["split"] == "val" for entry in celeb) == 2
    assert sum(entry["split"] == "val" for entry in utk) == 1
    assert celeb[0]["source"] == "celeb/images/face00.jpg"
    assert (out / "parser.pt").exists()
    assert not out.with_name("faces.partial").exists()


def test_corrupt_file_is_reported_and_skipped(cache):
    out, errors = cache
    summary = json.loads((out / "summary.json").read_text())
    assert [bad["path"] for bad in summary["bad_files"]] == [
        "celeb/images/face08.jpg (mask face08.png)",
        "utk/broken.jpg",
    ]
    assert all(bad["reason"] for bad in summary["bad_files"])
    assert "utk/broken.jpg" in errors and "face08.png" in errors
    sources = [entry["source"] for entry in json.loads((out / "index.json").read_text())]
    assert "utk/broken.jpg" not in sources and "celeb/images/face08.jpg" not in sources


def test_mask_derived_maps_follow_the_framed_mask(cache, source):
    out, _ = cache
    parsing = np.load(out / "parsing.npy")
    framer = load_framing_config().framer("celeba-hq")
    _, ids, _ = preset_face("celeba-hq", 512, seed=0)
    # Known points of the drawn face, mapped into the frame: each must carry its compact class.
    landmarks = load_framing_config().presets["celeba-hq"].landmarks
    u = landmarks.inter_ocular * 4
    ex, ey = (v * 4 for v in landmarks.eye_mid)
    checks = {
        (ex - u / 2, ey): "eyes",
        (ex + 0.5 * u, ey - 0.4 * u): "brows",
        (ex, ey + 0.45 * u): "nose",
        (landmarks.mouth[0] * 4, landmarks.mouth[1] * 4 - 0.08 * u): "mouth",
        (ex - 0.95 * u, ey): "skin",  # ear
        (ex - 1.1 * u, ey): "hair",
        (ex, ey + 1.55 * u): "background",  # necklace
    }
    for (x, y), name in checks.items():
        assert ids[int(y), int(x)] != 0
        fx, fy = framer.map_point(x, y, 512)
        assert 0 <= fx < 128 and 0 <= fy < 128, name
        assert parsing[0, int(fy), int(fx)] == COMPACT[name], name


def test_framing_measured_from_masks_matches_the_benchmark(cache):
    out, _ = cache
    summary = json.loads((out / "summary.json").read_text())
    measured = summary["framing"]["measured_from_masks_after_framing"]["celeb"]
    target = summary["framing"]["target"]
    assert measured["images"] == 8
    assert np.hypot(*(np.array(measured["eye_mid"]) - target["eye_mid"])) < 2.0
    assert abs(measured["inter_ocular"] - target["inter_ocular"]) < 3.0
    assert np.hypot(*(np.array(measured["mouth"]) - target["mouth"])) < 2.5
    heldout = summary["parser"]["heldout"]
    assert heldout["images"] == 2 and 0.0 <= heldout["pixel_accuracy"] <= 1.0


@pytest.mark.parametrize("scale", [4, 8])
def test_face_dataset_items(cache, scale):
    out, _ = cache
    train = FaceDataset(out, "train", scale)
    val = FaceDataset(out, "val", scale)
    assert len(train) == 10 and len(val) == 3
    item = train[0]
    assert item["lr"].shape == (3, 128 // scale, 128 // scale) and item["lr"].dtype == torch.float32
    assert item["hr"].shape == (3, 128, 128)
    assert item["parsing"].shape == (len(COMPACT_CLASSES), 128, 128)
    for tensor in item.values():
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    assert torch.all(item["parsing"].sum(0) == 1)
    assert torch.allclose(item["lr"] * 255, torch.from_numpy(bicubic_downsample(np.load(out / "hr.npy")[0], scale).copy())
                          .permute(2, 0, 1).float())


def test_face_dataset_flip_is_consistent(cache):
    out, _ = cache
    plain = FaceDataset(out, "train", 4)[1]
    augmented = FaceDataset(out, "train", 4, augment=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        item = augmented[1]
        flipped = torch.equal(item["hr"], plain["hr"].flip(-1))
        assert flipped or torch.equal(item["hr"], plain["hr"])
        for key in ("lr", "parsing"):
            assert torch.equal(item[key], plain[key].flip(-1) if flipped else plain[key])
        seen.add(flipped)
    assert seen == {True, False}


def test_face_dataset_oversample_repeats_one_source(cache):
    out, _ = cache
    plain = FaceDataset(out, "train", 4)
    counts = {}
    for entry in plain.entries:
        counts[entry["dataset"]] = counts.get(entry["dataset"], 0) + 1
    weighted_name = sorted(counts)[0]
    weighted = FaceDataset(out, "train", 4, oversample={weighted_name: 3})
    assert len(weighted) == len(plain) + 2 * counts[weighted_name]
    repeated = [row for row, entry in zip(weighted.rows, weighted.entries, strict=True) if entry["dataset"] == weighted_name]
    assert sorted(repeated) == sorted(3 * [e["row"] for e in plain.entries if e["dataset"] == weighted_name])
    with pytest.raises(ValueError, match="not in this split"):
        FaceDataset(out, "train", 4, oversample={"no-such-dataset": 2})
    with pytest.raises(ValueError, match="≥ 1"):
        FaceDataset(out, "train", 4, oversample={weighted_name: 0})


def test_the_benchmark_is_refused(tmp_path):
    (tmp_path / "helen50/hr").mkdir(parents=True)
    Image.new("RGB", (128, 128)).save(tmp_path / "helen50/hr/a.jpg")
    with pytest.raises(ValueError, match="benchmark"):
        discover_records(tmp_path, [DatasetSpec(name="h", images="helen50/hr", framing="helen50")])


def test_full_celebamask_layout_with_per_part_masks(tmp_path):
    """CelebA-HQ-img/<i>.jpg at twice the mask size, CelebAMask-HQ-mask-anno/<k>/<i:05d>_<part>.png."""
    from training.data.celebamask_parts import PART_NAMES

    images = tmp_path / "CelebA-HQ-img"
    images.mkdir()
    expected_ids = {}
    for index in range(2):
        image, _, _ = preset_face("celeba-hq", 256, seed=50 + index)
        image.save(images / f"{index}.jpg", quality=95)
        _, ids, _ = preset_face("celeba-hq", 128, seed=50 + index)
        expected_ids[index] = ids
        for class_id, part in enumerate(PART_NAMES, start=1):
            if (ids == class_id).any():
                folder = tmp_path / "CelebAMask-HQ-mask-anno" / str(index // 2000)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(((ids == class_id) * 255).astype(np.uint8)).convert("RGB").save(
                    folder / f"{index:05d}_{part}.png"
                )
    out = tmp_path / "cache"
    code = main(
        ["prepare-data", "--images", str(images), "--masks", str(tmp_path / "CelebAMask-HQ-mask-anno"),
         "--framing", "celeba-hq", "--val-count", "0", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    index = json.loads((out / "index.json").read_text())
    assert [entry["parsing"] for entry in index] == ["mask", "mask"]
    assert [entry["source"] for entry in index] == ["CelebA-HQ-img/0.jpg", "CelebA-HQ-img/1.jpg"]
    parsing = np.load(out / "parsing.npy")
    framer = load_framing_config().framer("celeba-hq")
    for row in range(2):
        expected = compact_from_celebamask(framer.frame_mask(expected_ids[row]))
        assert np.array_equal(parsing[row], expected)


def _eye_centroids(framed: np.ndarray) -> list[tuple[float, float]]:
    """Centres of the bright blobs in the left and right halves of a framed grey image."""
    ys, xs = np.mgrid[0:128, 0:128] + 0.5
    centres = []
    for half in (xs < 64, xs >= 64):
        weights = framed * half
        weights = weights / weights.sum()
        centres.append(((weights * xs).sum(), (weights * ys).sum()))
    return centres


def test_an_image_with_its_own_landmarks_is_framed_from_them(tmp_path):
    """Two faces at different sizes and places in a 350-px image, each with its five points: both come
    out with the eyes where Helen-50 has them, which no single per-dataset transform could do."""
    config = load_framing_config()
    target = config.target
    (tmp_path / "set/images").mkdir(parents=True)
    points = {}
    for name, (eye_x, eye_y, inter_ocular) in {"near": (160.0, 150.0, 100.0), "far": (200.0, 120.0, 60.0)}.items():
        image = np.zeros((350, 350, 3), dtype=np.uint8)
        half = inter_ocular / 2
        eyes = [(eye_x - half, eye_y), (eye_x + half, eye_y)]
        for x, y in eyes:
            image[int(y) - 3 : int(y) + 3, int(x) - 3 : int(x) + 3] = 255
        mouth_y = eye_y + inter_ocular * (target.mouth[1] - target.eye_mid[1]) / target.inter_ocular
        points[name] = [*eyes, (eye_x, eye_y + half), (eye_x - half * 0.6, mouth_y), (eye_x + half * 0.6, mouth_y)]
        Image.fromarray(image).save(tmp_path / f"set/images/{name}.png")
    (tmp_path / "set/landmarks.json").write_text(json.dumps(points))
    spec = DatasetSpec(name="set", images="set/images", framing="helen50", landmarks="set/landmarks.json")
    records, _ = discover_records(tmp_path, [spec])
    assert [record.landmarks is not None for record in records] == [True, True]
    from training.data.prepare import frame_record

    for record in records:
        framed = frame_record(record, config.framer("helen50"), config).hr.astype(float).sum(axis=2)
        left, right = _eye_centroids(framed)
        assert right[0] - left[0] == pytest.approx(target.inter_ocular, abs=1.5)
        assert (left[0] + right[0]) / 2 == pytest.approx(target.eye_mid[0], abs=1.0)
        assert (left[1] + right[1]) / 2 == pytest.approx(target.eye_mid[1], abs=1.5)


def test_images_of_one_person_share_a_split(tmp_path):
    from training.data.prepare import choose_validation
    from training.data.prepare_config import PrepareConfig

    (tmp_path / "people").mkdir()
    for person in range(10):
        for expression in ("03", "08"):
            Image.new("RGB", (64, 64)).save(tmp_path / f"people/{person:03d}_{expression}.jpg")
    spec = DatasetSpec(name="people", images="people", framing="helen50", val_count=6, split_group=r"^(\d+)_")
    records, _ = discover_records(tmp_path, [spec])
    splits = choose_validation(records, [False] * len(records), PrepareConfig(datasets=[spec]))
    by_person: dict[str, set[str]] = {}
    for record, split in zip(records, splits, strict=True):
        by_person.setdefault(record.group, set()).add(split)
    assert all(len(chosen) == 1 for chosen in by_person.values())
    assert splits.count("val") == 6  # three people, both photos each
    with pytest.raises(ValueError, match="does not match"):
        discover_records(tmp_path, [DatasetSpec(name="p", images="people", framing="helen50", split_group=r"^x(\d)")])
