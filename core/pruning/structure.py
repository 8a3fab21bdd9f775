"""A model's structure — its modules, their classes and the shapes of their tensors — to tell
when a model changed under a proposal or a step (a layer replaced, channels cut elsewhere)."""

from __future__ import annotations

import itertools

from torch import nn

#: module name -> (class, tensor name -> shape)
Structure = dict[str, tuple[str, dict[str, tuple[int, ...]]]]


def structure(model: nn.Module) -> Structure:
    """What would have to stay the same for a plan or a proposal made now to fit ``model`` later."""
    return {
        name: (
            type(module).__qualname__,
            {
                key: tuple(t.shape)
                for key, t in itertools.chain(
                    module.named_parameters(recurse=False), module.named_buffers(recurse=False)
                )
            },
        )
        for name, module in model.named_modules()
    }


def first_change(before: Structure, after: Structure) -> str | None:
    """The first difference between two structures, in words; ``None`` when there is none."""
    for name in [*before, *(n for n in after if n not in before)]:
        label = repr(name) if name else "the model"
        if name not in after:
            return f"module {label} was removed"
        if name not in before:
            return f"module {label} was added"
        (was_class, was), (now_class, now) = before[name], after[name]
        if was_class != now_class:
            return f"{label} is now a {now_class}, was a {was_class}"
        for key in [*was, *(k for k in now if k not in was)]:
            if key not in now or key not in was:
                return f"{label}.{key} was {'removed' if key in was else 'added'}"
            if was[key] != now[key]:
                return f"{label}.{key} has shape {now[key]}, was {was[key]}"
    return None
