"""Models on degraded input: the fixed degradation table (training/degradations/benchmark.py).

    python -m benchmarks.degradations --data helen50 held-out --json benchmarks/results/degradations.json
    python -m benchmarks.degradations --data held-out --candidate real:4:runs/real-x4/real-x4.onnx

For every row of the table (clean; JPEG 90/75/50/30; noise σ 5/10/15; blur; area; two chains),
every scale and every model (the manifest's clean and real variants, and any --candidate), on
Helen-50 and/or the cache's held-out faces: PSNR-Y, SSIM-Y and LPIPS beside bicubic of the same
degraded input, through ONNX Runtime from the ONNX files — the service's pixels. It also records,
per image, what ``model=auto`` (service/input_quality.py) would pick, so the rule's regret
(the loss against the better of the two models, row by row) comes out of the same run, and
``--fit-auto`` chooses the rule's thresholds on the held-out records (never on Helen-50).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def load_faces(data: str, helen_dir: str, cache_dir: str, limit: int) -> np.ndarray:
    from training.evaluation import load_hr_cache, load_hr_folder

    faces = load_hr_folder(helen_dir, 8) if data == "helen50" else load_hr_cache(cache_dir, "val")
    faces = faces[:limit] if limit else faces
    return np.stack([image for _, image in faces])


def manifest_models(manifest_path: Path) -> list[dict[str, Any]]:
    manifest = json.loads(manifest_path.read_text())
    return [
        {"variant": entry.get("variant", "clean"), "scale": entry["scale"], "name": entry["name"],
         "path": str(manifest_path.parent / entry["onnx"])}
        for entry in manifest["models"]
    ]  # fmt: skip


def parse_candidate(text: str) -> dict[str, Any]:
    variant, scale, path = text.split(":", 2)
    return {"variant": variant, "scale": int(scale), "name": Path(path).stem, "path": path}


def score_scale(faces: np.ndarray, scale: int, models: list[dict[str, Any]], lpips_net: Any) -> list[dict[str, Any]]:
    """One record per (row, image): each method's scores, and the upload's JPEG quality and noise."""
    from service.core.input_quality import jpeg_quality, noise_sigma
    from training.degradations.benchmark import TABLE, decode
    from training.evaluation import OnnxUpscaler, bicubic_upscale
    from training.metrics import lpips, psnr_y, ssim_y

    upscalers = {model["variant"]: OnnxUpscaler(model["path"], scale) for model in models}
    records = []
    for row in TABLE:
        uploads = [row.upload(hr, scale, index) for index, hr in enumerate(faces)]
        lr = np.stack([decode(upload) for upload in uploads])
        outputs = {"bicubic": np.stack([bicubic_upscale(image, scale) for image in lr])}
        for variant, upscaler in upscalers.items():
            outputs[variant] = np.concatenate([upscaler(lr[i : i + 25]) for i in range(0, len(lr), 25)])
        distances = {
            method: (np.atleast_1d(lpips(images, faces, lpips_net)) if lpips_net is not None else None)
            for method, images in outputs.items()
        }
        for index, hr in enumerate(faces):
            record = {"row": row.name, "image": index, "jpeg_quality": jpeg_quality(uploads[index]),
                      "noise_sigma": round(noise_sigma(lr[index]), 3)}  # fmt: skip
            for method, images in outputs.items():
                record[method] = {
                    "psnr_y": psnr_y(images[index], hr),
                    "ssim_y": ssim_y(images[index], hr),
                    "lpips": None if distances[method] is None else float(distances[method][index]),
                }
            records.append(record)
    return records


def with_auto(records: list[dict[str, Any]], rule: Any, scale: int) -> list[dict[str, Any]]:
    """Each record gains ``auto``: the scores of the variant the rule picks from its features."""
    from portraitsr.manifest import ModelVariant

    for record in records:
        if not {"clean", "real"} <= set(record):
            continue
        quality, sigma = record["jpeg_quality"], record["noise_sigma"]
        real = (quality is not None and quality <= rule.jpeg_quality_max) or sigma >= (
            rule.noise_sigma_min_x8 if scale >= 8 else rule.noise_sigma_min_x4
        )
        record["auto_choice"] = str(ModelVariant.REAL if real else ModelVariant.CLEAN)
        record["auto"] = record[record["auto_choice"]]
    return records


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row: each method's mean scores, the gain over bicubic and the regret of each policy."""
    by_row: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_row[record["row"]].append(record)
    methods = [m for m in ("bicubic", "clean", "real", "auto") if m in records[0]]
    table = []
    for row, rows in by_row.items():
        line: dict[str, Any] = {"row": row, "images": len(rows)}
        for method in methods:
            for metric in ("psnr_y", "ssim_y", "lpips"):
                values = [r[method][metric] for r in rows]
                line[f"{method}_{metric}"] = None if None in values else float(np.mean(values))
        if {"clean", "real"} <= set(methods):
            best = max(line["clean_psnr_y"], line["real_psnr_y"])
            for policy in ("clean", "real", "auto"):
                if policy in methods:
                    line[f"regret_{policy}"] = best - line[f"{policy}_psnr_y"]
            line["auto_real_share"] = float(np.mean([r["auto_choice"] == "real" for r in rows])) if "auto" in methods else None
        table.append(line)
    return table


CLEAN_TO_REAL_MAX = 0.1  # at most this share of the clean row's PNGs may go to the real model


def fit_auto(records_by_scale: dict[int, list[dict[str, Any]]]) -> Any:
    """Thresholds with the least mean regret over every row and both scales (held-out records).

    The contract: a JPEG of quality ≤ 80 goes to the real model, so jpeg_quality_max is searched
    from 80 up; a clean PNG goes to the clean model, so a rule that sends more than
    CLEAN_TO_REAL_MAX of the clean row's PNGs to the real model is not a candidate (unconstrained,
    the least regret sends half of them there: the real model is only 0.3 dB behind on them and far
    ahead on the blurred row, which no rule can see).
    """
    from service.core.input_quality import AutoRule

    best_rule, best_regret = None, float("inf")
    sigmas = [round(x, 1) for x in np.arange(3.0, 16.01, 0.5)]
    for quality_max in (80, 85, 90, 95, 100):
        for sigma4 in sigmas:
            for sigma8 in sigmas:
                rule = AutoRule(quality_max, float(sigma4), float(sigma8))
                regrets, clean_share = [], 0.0
                for scale, records in records_by_scale.items():
                    table = summarise(with_auto(records, rule, scale))
                    regrets += [line["regret_auto"] for line in table]
                    clean_share = max(clean_share, *(line["auto_real_share"] for line in table if line["row"] == "clean"))
                if clean_share <= CLEAN_TO_REAL_MAX and np.mean(regrets) < best_regret - 1e-9:
                    best_rule, best_regret = rule, float(np.mean(regrets))
    return best_rule


def markdown(table: list[dict[str, Any]], scale: int, data: str) -> str:
    def cell(line: dict[str, Any], key: str, digits: int) -> str:
        value = line.get(key)
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [f"×{scale}, {data} ({table[0]['images']} faces per row): PSNR-Y gain over bicubic of the same input (dB), "
             "SSIM-Y and LPIPS of each, regret of auto", "",
             "| input | bicubic PSNR-Y | clean gain | real gain | auto gain | bicubic SSIM | clean SSIM | real SSIM "
             "| bicubic LPIPS | clean LPIPS | real LPIPS | auto → real | auto regret |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for line in table:
        gains = []
        for method in ("clean", "real", "auto"):
            value = line.get(f"{method}_psnr_y")
            gains.append("–" if value is None else f"{value - line['bicubic_psnr_y']:+.2f}")
        share = line.get("auto_real_share")
        lines.append(
            f"| {line['row']} | {cell(line, 'bicubic_psnr_y', 2)} | {' | '.join(gains)} | "
            f"{cell(line, 'bicubic_ssim_y', 4)} | {cell(line, 'clean_ssim_y', 4)} | {cell(line, 'real_ssim_y', 4)} | "
            f"{cell(line, 'bicubic_lpips', 3)} | {cell(line, 'clean_lpips', 3)} | {cell(line, 'real_lpips', 3)} | "
            f"{'–' if share is None else f'{100 * share:.0f} %'} | {cell(line, 'regret_auto', 3)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=["helen50", "held-out"], default=["helen50", "held-out"])
    parser.add_argument("--scales", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--helen", default=str(REPO.parent / "shared/data/helen50/hr"))
    parser.add_argument("--cache", default="data-cache/faces")
    parser.add_argument("--limit", type=int, default=0, help="faces per data set (0: all)")
    parser.add_argument("--manifest", default=str(REPO / "model/release/manifest.json"))
    parser.add_argument("--candidate", action="append", default=[], help="VARIANT:SCALE:PATH.onnx (replaces the manifest's)")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--fit-auto", action="store_true", help="choose auto's thresholds on the held-out records")
    parser.add_argument("--json", default=None)
    parser.add_argument("--replay", default=None, help="re-summarise the records of an earlier --json (no inference)")
    args = parser.parse_args()

    import onnxruntime

    from service.core.input_quality import AutoRule
    from training.metrics import load_lpips

    onnxruntime.set_default_logger_severity(3)
    lpips_net = None if args.no_lpips else load_lpips()
    models = manifest_models(Path(args.manifest))
    for candidate in map(parse_candidate, args.candidate):
        models = [m for m in models if (m["variant"], m["scale"]) != (candidate["variant"], candidate["scale"])]
        models.append(candidate)
    records: dict[str, dict[int, list[dict[str, Any]]]] = {}
    if args.replay:
        earlier = json.loads(Path(args.replay).read_text())
        for key, scale_records in earlier["records"].items():
            data, scale = key.rsplit("-x", 1)
            records.setdefault(data, {})[int(scale)] = scale_records
    for data in [] if args.replay else args.data:
        faces = load_faces(data, args.helen, args.cache, args.limit)
        records[data] = {
            scale: score_scale(faces, scale, [m for m in models if m["scale"] == scale], lpips_net)
            for scale in args.scales
        }
    rule = AutoRule()
    if args.fit_auto and "held-out" in records:
        rule = fit_auto(records["held-out"])
        print(f"auto rule fitted on held-out: {rule}")
    if rule is None:
        raise SystemExit("no rule meets the contract on these records")
    rule_fields = {key: float(value) for key, value in asdict(rule).items()}
    result: dict[str, Any] = {"models": models, "auto_rule": rule_fields, "tables": {}}
    for data, by_scale in records.items():
        for scale, scale_records in by_scale.items():
            table = summarise(with_auto(scale_records, rule, scale))
            result["tables"][f"{data}-x{scale}"] = table
            print(markdown(table, scale, data), end="\n\n", flush=True)
    if args.json:
        result["records"] = {f"{d}-x{s}": r for d, by in records.items() for s, r in by.items()}
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
