"""Write the golden tensors of tests/test_paper_reference.py from the paper's released code.

    python benchmarks/paper_golden.py --reference /path/to/Disentangled-Multimodal-Learning \
        --reference-path /folder/holding/einops -o tests/data/paper_golden.json

`--reference` is a checkout of github.com/helenypzhang/Disentangled-Multimodal-Learning; its models are
imported (or, for the two small classes that live in modules with training-only imports, MaxNet and
OmicDomainScaleLoss, read from its source at run time); nothing of it is copied into this repository.

The released TeachersNet (two SNNs, a TeacherNet per magnification) and StudentsNet get weights drawn
from a seeded generator by `seeded_state` (the test draws the same ones from the key names and shapes
stored in the golden file), run in eval mode on a seeded input (3 bags of 256 patches, a 16 x 16
grid, at 10x and 20x), and their logits and consistency loss are written as JSON (a few KB).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from paper_models import load_reference

SEED, BATCH, PATCHES, FEATURES, CLASSES = 0, 3, 256, 1024, 4
GENES = {"tumour": 59, "microenvironment": 361}


def seeded_state(shapes: list[tuple[str, list[int]]], seed: int) -> dict[str, Tensor]:
    """Weights for the key names and shapes, in order: N(0, 1/fan_in) for matrices and kernels, 1 + 0.1 N
    for LayerNorm scales, 0.1 N for other vectors. tests/test_paper_reference.py imports this function."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes:
        value = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            value = value / fan_in**0.5
        elif "norm.weight" in name:
            value = 1 + 0.1 * value
        else:
            value = 0.1 * value
        state[name] = value
    return state


def seeded_inputs(seed: int) -> dict[str, Tensor]:
    """The golden input. Kept in sync with tests/test_paper_reference.py."""
    g = torch.Generator().manual_seed(seed + 1)
    return {
        "10x": torch.randn(BATCH, PATCHES, FEATURES, generator=g),
        "20x": torch.randn(BATCH, PATCHES, FEATURES, generator=g),
        **{name: torch.randn(BATCH, n, generator=g) for name, n in GENES.items()},
    }


def released_classes(path: Path, names: set[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute just the top-level definitions `names` of a released source file (read at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = [node for node in tree.body if getattr(node, "name", None) in names]
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def max_confidence(first: Tensor, second: Tensor) -> Tensor:
    """The released combine_logits('max_confidence')."""
    conf1 = torch.softmax(first, 1).max(1).values
    conf2 = torch.softmax(second, 1).max(1).values
    return torch.where((conf1 > conf2).unsqueeze(1), first, second)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, required=True, help="checkout of the released code")
    parser.add_argument("--reference-path", action="append", default=[], help="extra sys.path for its deps")
    parser.add_argument("-o", "--output", type=Path, default=Path("tests/data/paper_golden.json"))
    args = parser.parse_args()

    modules = load_reference(args.reference, args.reference_path)
    nn = torch.nn
    namespace = released_classes(
        args.reference / "models" / "model.py",
        {"MaxNet"},
        {"nn": nn, "torch": torch, "Parameter": nn.Parameter, "init_max_weights": lambda module: None},
    )
    released_classes(args.reference / "utils" / "loss.py", {"diag_variance_loss", "OmicDomainScaleLoss"},
                     namespace)  # fmt: skip
    config = types.SimpleNamespace(
        path_dim=128,
        attn_dim=2,
        label_dim=CLASSES,
        path_cluster_num=2 / PATCHES,  # 2 tokens, as the paper
    )

    teachers = nn.Module()
    teachers.omic_net_tumor = namespace["MaxNet"](GENES["tumour"], 128, "False", 0.1, CLASSES)
    teachers.omic_net_immune = namespace["MaxNet"](GENES["microenvironment"], 128, "False", 0.1, CLASSES)
    teachers.teacher10_net = modules.TeacherNet(config)
    teachers.teacher20_net = modules.TeacherNet(config)
    students = nn.Module()
    students.student10_net = modules.StudentNet(config)
    students.student20_net = modules.StudentNet(config)

    golden: dict[str, Any] = {"seed": SEED, "batch": BATCH, "patches": PATCHES, "genes": GENES}
    x = seeded_inputs(SEED)
    torch.manual_seed(SEED)  # the released DPC-kNN adds 1e-6 noise to its densities
    with torch.no_grad():
        for name, model, seed in (("teacher", teachers, SEED), ("student", students, SEED + 10)):
            shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
            model.load_state_dict(seeded_state(shapes, seed))
            model.eval()
            golden[f"{name}_keys"] = shapes
            golden[f"{name}_weight_seed"] = seed
        tumour = teachers.omic_net_tumor(x_omic=x["tumour"])[0]
        immune = teachers.omic_net_immune(x_omic=x["microenvironment"])[0]
        out10 = teachers.teacher10_net(path=x["10x"], omic_list=[tumour, immune])
        out20 = teachers.teacher20_net(path=x["20x"], omic_list=[tumour, immune])
        loss = namespace["OmicDomainScaleLoss"](BATCH, 1)(out10[6], out20[6], out10[7], out20[7])
        golden["teacher"] = {
            "10x": out10[0].tolist(),
            "20x": out20[0].tolist(),
            "logits": max_confidence(out10[0], out20[0]).tolist(),
            "consistency": float(loss),
        }
        stu10 = students.student10_net(path=x["10x"])[0]
        stu20 = students.student20_net(path=x["20x"])[0]
        golden["student"] = {
            "10x": stu10.tolist(),
            "20x": stu20.tolist(),
            "logits": max_confidence(stu10, stu20).tolist(),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(golden) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
