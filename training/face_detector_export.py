"""MTCNN P/R/O-Net → ONNX for the service's face detector (``service/faces/detector.py``).

The weights are the MIT-licensed state dicts shipped inside the ``facenet-pytorch`` wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``, converted by Tim Esler from the MTCNN authors'
Caffe models via davidsandberg/facenet). They are loaded into the module definitions below (the
same layer names, so ``load_state_dict`` is strict), exported with the TorchScript exporter, and
checked against PyTorch on fixed inputs. Only the three small ONNX files are shipped.

    pip download --no-deps facenet-pytorch -d /tmp/fnp      # never installs it (or torchvision)
    python -m training.face_detector_export --wheel /tmp/fnp/facenet_pytorch-2.6.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "model" / "face_detector"
PARITY_TOLERANCE = 1e-4
NET_NAMES = ("pnet", "rnet", "onet")


class PNet(nn.Module):
    """12×12 proposal net, fully convolutional: N×3×H×W → box offsets N×4×h×w, face probability N×2×h×w."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """24×24 refinement net: N×3×24×24 → box offsets N×4, face probability N×2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the Caffe weights flatten W, H, C
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """48×48 output net: N×3×48×48 → box offsets N×4, landmarks N×10 (5 x then 5 y), probability N×2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}
OUTPUT_NAMES = {"pnet": ["offsets", "probs"], "rnet": ["offsets", "probs"], "onet": ["offsets", "landmarks", "probs"]}
EXAMPLE_SIDES = {"pnet": (37, 53), "rnet": (24, 24), "onet": (48, 48)}


def read_wheel_state_dicts(wheel: Path) -> dict[str, tuple[dict, str]]:
    """{name: (state dict, sha256 of the .pt file)} from the facenet-pytorch wheel, without installing it."""
    result = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in NET_NAMES:
            data = archive.read(f"facenet_pytorch/data/{name}.pt")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            result[name] = (state, hashlib.sha256(data).hexdigest())
    return result


def build_net(name: str, state: dict) -> nn.Module:
    net = NETS[name]()
    net.load_state_dict(state, strict=True)
    return net.eval()


def state_from_onnx(name: str, onnx_path: Path) -> dict:
    """The state dict stored in an exported ONNX file (initializer names are the parameter names)."""
    import onnx
    from onnx import numpy_helper

    wanted = set(NETS[name]().state_dict())
    model = onnx.load(str(onnx_path))
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer if i.name in wanted}
    missing = wanted - set(state)
    if missing:
        raise ValueError(f"{onnx_path}: parameters missing from the ONNX initializers: {sorted(missing)}")
    return state


def fixed_inputs(name: str, seed: int = 0) -> list[np.ndarray]:
    """Fixed test inputs in the nets' input range ((pixel - 127.5) / 128): noise and a smooth ramp."""
    rng = np.random.default_rng(seed)
    height, width = EXAMPLE_SIDES[name]
    noise = rng.uniform(-1, 1, (3, 3, height, width)).astype(np.float32)
    ramp = np.broadcast_to(np.linspace(-1, 1, width, dtype=np.float32), (1, 3, height, width)).copy()
    return [noise, ramp]


def export_net(name: str, net: nn.Module, path: Path) -> None:
    height, width = EXAMPLE_SIDES[name]
    dynamic = {0: "N", 2: "H", 3: "W"} if name == "pnet" else {0: "N"}
    outputs = OUTPUT_NAMES[name]
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, height, width),),
        str(path),
        input_names=["image"],
        output_names=outputs,
        dynamic_axes={"image": dynamic, **{out: {0: "N"} for out in outputs}},
        opset_version=17,
        dynamo=False,
        keep_initializers_as_inputs=False,
        do_constant_folding=False,  # keeps the parameters as named initializers (state_from_onnx)
    )


def max_parity_error(name: str, net: nn.Module, onnx_path: Path) -> float:
    """The largest absolute difference between PyTorch and ONNX Runtime outputs on the fixed inputs."""
    from portraitsr.runtimes import onnxruntime_session

    session = onnxruntime_session(onnx_path)
    worst = 0.0
    for batch in fixed_inputs(name):
        with torch.no_grad():
            expected = [t.numpy() for t in net(torch.from_numpy(batch))]
        got = session.run(None, {"image": batch})
        worst = max(worst, *(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True)))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="facenet_pytorch-*.whl (pip download --no-deps)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT_DIR)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, (state, digest) in read_wheel_state_dicts(args.wheel).items():
        net = build_net(name, state)
        path = args.output / f"mtcnn-{name}.onnx"
        export_net(name, net, path)
        error = max_parity_error(name, net, path)
        if error > PARITY_TOLERANCE:
            raise SystemExit(f"{name}: ONNX differs from PyTorch by {error:.2e} (> {PARITY_TOLERANCE})")
        sources[name] = {"onnx": path.name, "onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                         "source": f"{args.wheel.name}:facenet_pytorch/data/{name}.pt", "source_sha256": digest,
                         "parity_max_abs_diff": error}
        print(f"{name}: {path} ({path.stat().st_size} bytes), parity {error:.2e}")
    (args.output / "manifest.json").write_text(json.dumps({"detector": "mtcnn", "nets": sources}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
