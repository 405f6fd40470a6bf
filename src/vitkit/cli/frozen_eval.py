"""`vitkit eval --few-shot/--linear-probe/--knn`: frozen-feature evaluation of a checkpoint
(any data, any classes: the model's head is not used), one call to
`vitkit.infer.evaluate_frozen`; the numbers go to the eval folder's metrics.json under
"frozen" and are printed as a small table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .main import CommandError


def add_frozen_options(parser: argparse.ArgumentParser) -> None:
    """The flags of frozen-feature evaluation; their dests are evaluate_frozen's arguments."""
    group = parser.add_argument_group(
        "frozen-feature evaluation (fitted on the train split, scored on --split; features in "
        "fp32; the model's head is not used, so any data and classes will do)")
    group.add_argument("--few-shot", dest="shots", type=int, nargs="+", metavar="SHOTS",
                       help="few-shot linear regression with these images per class, e.g. "
                       "1 5 10 25 (the paper's; big_vision's fewshot_lsr)")
    group.add_argument("--seeds", type=int, default=3, help="few-shot draws (default 3)")
    group.add_argument("--l2", type=float, default=2.0**10,
                       help="few-shot regularisation (default 2^10 = 1024)")
    group.add_argument("--linear-probe", action="store_true",
                       help="multinomial logistic regression on all training features")
    group.add_argument("--probe-c", dest="probe_c", type=float, default=None,
                       help="the probe's C (default: the best of 0.001..10 on a 10%% carve)")
    group.add_argument("--knn", type=int, default=None, metavar="K",
                       help="K-nearest-neighbour vote by cosine similarity")
    group.add_argument("--feature-layer", dest="layer", type=int, default=None, metavar="N",
                       help="a transformer's pooled tokens after block N (0-based, -1 the "
                       "last) instead of its pre-logits")


def wants_frozen(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a frozen-feature evaluation."""
    return bool(args.shots) or args.linear_probe or args.knn is not None


def check_frozen_flags(args: argparse.Namespace, model) -> None:
    """The flags' errors that need no data, before any image is decoded."""
    from vitkit.infer.frozen import check_frozen_options

    check_frozen_options(model, few_shot=args.shots, seeds=args.seeds, l2=args.l2,
                         linear_probe=args.linear_probe, probe_c=args.probe_c, knn=args.knn,
                         layer=args.layer)
    if args.split == "train":
        raise CommandError("the frozen classifiers are fitted on the train split; score them "
                           "on --split test or val")


def run_frozen(args: argparse.Namespace, model, splits, split: str, device,
               out: Path, checkpoint: Path) -> int:
    """Evaluate the frozen features, write them into out/metrics.json and print the table."""
    from vitkit.files import write_json
    from vitkit.infer import evaluate_frozen

    result = evaluate_frozen(
        model, splits.get("train"), splits.get(split), few_shot=args.shots,
        seeds=args.seeds, l2=args.l2, linear_probe=args.linear_probe, probe_c=args.probe_c,
        knn=args.knn, layer=args.layer, batch_size=args.batch_size, device=device)
    document = _earlier(out / "metrics.json", str(checkpoint), args.data)
    document.update(checkpoint=str(checkpoint), data=args.data)
    document["frozen"] = {"split": split, **result}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", document)
    print(frozen_table(result, f"{splits.name}/{split}"))
    print(f"wrote {out / 'metrics.json'}")
    return 0


def _earlier(path: Path, checkpoint: str, data: str) -> dict[str, Any]:
    """What an earlier `vitkit eval` of the same checkpoint and data left in metrics.json
    (kept beside the frozen numbers), else nothing."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    same = earlier.get("checkpoint") == checkpoint and earlier.get("data") == data
    return earlier if same else {}


def frozen_table(result: dict[str, Any], scored_on: str) -> str:
    """The frozen-feature numbers as a few lines of text, accuracies in percent."""
    features = result["features"]
    lines = [f"frozen features ({features['layer']}, {features['dim']} dims) of "
             f"{features['train_images']} training images, scored on {scored_on} "
             f"({features['test_images']} images):"]
    if "few_shot" in result:
        few = result["few_shot"]
        lines.append(f"  few-shot (l2 {few['l2']:g}, mean ± std over seeds "
                     f"{', '.join(map(str, few['seeds']))}):")
        lines += [f"    {shots:>4}-shot  {100 * r['mean']:6.2f}% ± {100 * r['std']:.2f}"
                  for shots, r in few["shots"].items()]
    if "linear_probe" in result:
        probe = result["linear_probe"]
        lines.append(f"  linear probe (C {probe['c']:g}) {100 * probe['top1']:6.2f}%")
    if "knn" in result:
        lines.append(f"  {result['knn']['k']}-NN             {100 * result['knn']['top1']:6.2f}%")
    return "\n".join(lines)
