"""What `vitkit train`, `finetune` and `pretrain` share: their flags as the arguments of
`vitkit.plan_training`, the plan printed, `fit()`, and the summary printed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .recipe_args import parse_model_args, recipe_overrides


def training_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `vitkit.plan_training` that the shared flags give."""
    budget = getattr(args, "time_budget", None)
    return dict(
        data=args.data, out=args.out, model=args.model, recipe=args.recipe,
        overrides=recipe_overrides(args), model_args=parse_model_args(args.model_arg),
        img_size=args.img_size, seed=args.seed, device=args.device, precision=args.precision,
        time_budget=None if budget is None else budget * 60.0, val_split=args.val_split,
        data_dir=args.data_dir, resume=args.resume, threads=args.threads,
        progress=not args.no_progress,
        memory_budget=None if args.memory_budget is None else int(args.memory_budget * 2**30),
        save_every=args.save_every, stop_after=args.stop_after, log_every=args.log_every,
        compile=_choice(args.compile), data_on_device=_choice(args.data_on_device),
        workers=args.workers, decode_on_device=_choice(args.decode_on_device),
        grad_checkpointing=args.grad_checkpointing, fsdp=args.fsdp,
        teacher=getattr(args, "teacher", None),
    )


def run_training(args: argparse.Namespace, **fixed: Any) -> int:
    """Plan the run the flags describe (with `fixed` arguments on top), print the plan,
    train, print the summary; exit status 3 when it stopped before the end (--stop-after)."""
    from vitkit.train import plan_training
    from vitkit.train.distributed import is_main_process

    planned = plan_training(**{**training_arguments(args), **fixed})
    main = is_main_process()  # under torchrun, rank 0 alone reports
    if main:
        print(planned, flush=True)
    summary = planned.fit()
    if main:
        print(json.dumps(summary))
        print(f"checkpoint: {summary['checkpoint']} (load with "
              f"vitkit.load_pretrained({summary['checkpoint']!r}))")
    return 0 if summary["finished"] else 3


def _choice(value: str) -> bool | None:
    """'on'/'off'/'auto' as True/False/None."""
    return {"on": True, "off": False}.get(value)
