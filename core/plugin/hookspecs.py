"""The plugin contract: one hook per extension point.

A plugin is any object or module with functions named like the hooks below, marked with
``@prunekit.hookimpl``. Built-in plugins and installed ones are registered the same way: through
the ``prunekit`` entry-point group (``[project.entry-points.prunekit]`` in ``pyproject.toml``),
or through ``plugins.load`` in a run's config. Registry hooks return lists of named records;
two plugins returning the same name for the same kind is an error naming both.

The lifecycle events a run broadcasts are in :mod:`prunekit.plugin.events`. The examples run as
doctests in the test suite. ``docs/writing-plugins.md`` is the guide; ``prunekit.testing`` proves
a plugin against this contract.
"""

from __future__ import annotations

import pluggy
from torch import nn

from ..layer_type import LayerType
from ..records import Spec, Traversal

hookspec = pluggy.HookspecMarker("prunekit")
hookimpl = pluggy.HookimplMarker("prunekit")

#: The version of this contract. It grows by one when a hook changes incompatibly (a removed or
#: renamed hook or argument, a changed meaning); additions leave it as it is. A plugin can check
#: ``prunekit.HOOK_VERSION`` and refuse to load against a version it does not know.
HOOK_VERSION = 2


@hookspec
def prunekit_layer_types() -> list[LayerType]:
    """Return layer types: how to count and cut a module class.

    A layer type is a :class:`prunekit.LayerType` subclass instance that declares ``flow()``:
    ``PRODUCER`` (new output channels from all inputs, like a convolution), ``CHANNELWISE``
    (output channel c from input channel c only, like a norm), ``DEPTHWISE`` or ``OPAQUE``.
    Resolution walks the module class's MRO, so a type registered for ``nn.Conv2d`` also counts
    subclasses of it; a user's cost function (``cost.overrides``) replaces a layer type's MACs or
    parameters, never its flow or cut. ``prunekit.testing
    .check_layer_type`` proves one against real forwards.

    >>> import torch, prunekit as pk
    >>> from torch import nn
    >>> class Scale(nn.Module):                    # a per-channel learned scale
    ...     def __init__(self, c):
    ...         super().__init__()
    ...         self.gain = nn.Parameter(torch.ones(c))
    ...     def forward(self, x):
    ...         return x * self.gain.view(1, -1, 1, 1)
    >>> class ScaleType(pk.LayerType):
    ...     name, module, kind = "scale", Scale, "norm"
    ...     def flow(self, module):                   # output channel c is input channel c, scaled
    ...         return pk.Flow.CHANNELWISE
    ...     def macs(self, module, shape):
    ...         return pk.numel(shape.output)
    ...     def params(self, module, shape):
    ...         return shape.out_channels
    ...     def prune_out(self, module, keep):
    ...         pk.cut_parameter(module, "gain", keep, 0)
    >>> class ScalePlugin:
    ...     @pk.hookimpl
    ...     def prunekit_layer_types(self):
    ...         return [ScaleType()]
    >>> with pk.registered(ScalePlugin()):
    ...     pk.count(Scale(8), torch.zeros(1, 8, 4, 4), include="all").macs
    128
    """


@hookspec
def prunekit_models() -> list[Spec]:
    """Return model builders: ``Spec(name, factory, description)``, ``factory(**args) -> nn.Module``.

    The builder is how a pruned model is rebuilt: export stores the model name, its args and the
    pruning plan, never a pickled module.

    >>> import prunekit as pk
    >>> from torch import nn
    >>> class TinyModels:
    ...     @pk.hookimpl
    ...     def prunekit_models(self):
    ...         return [pk.Spec("tiny", lambda width=8: nn.Conv2d(1, width, 3), "one conv")]
    >>> with pk.registered(TinyModels()):
    ...     pk.get("model", "tiny", width=4).out_channels
    4
    """


@hookspec(firstresult=True)
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    """Describe a model this plugin recognises, or return ``None`` to let the next plugin try.

    The first non-``None`` answer wins; when no plugin answers, every layer's block is its
    parent module and nothing but the layers feeding the model output is protected.
    ``Traversal.matching(model)`` answers a traversal when the model has every module it names.

    >>> import prunekit as pk
    >>> from torch import nn
    >>> class PairTraversal:
    ...     @pk.hookimpl
    ...     def prunekit_traversal(self, model):
    ...         if isinstance(model, nn.Sequential) and len(model) == 2:
    ...             return pk.Traversal("pair", blocks=("0", "1"), protected=("1",), taps=("0",))
    >>> with pk.registered(PairTraversal()):
    ...     pk.manager().traversal(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1))).name
    'pair'
    """


@hookspec
def prunekit_criteria() -> list[Spec]:
    """Return importance criteria: ``factory(**args)`` builds a criterion object.

    A criterion has ``needs`` (a subset of ``{"weights", "activations", "gradients"}``),
    ``reset()``, ``observe(layer, activation, gradient)`` — called once per calibration batch
    with the raw output of each scored layer, to update streaming statistics — and
    ``score(layer) -> Tensor | None``: one value per output channel of ``layer`` (a
    :class:`prunekit.ScoredLayer` with ``name``, ``module``, ``role`` and ``weight_rows()``),
    higher meaning more important, or ``None`` when the criterion has nothing to say about it.
    Under torchrun, an optional ``all_reduce(sum_)`` is called after calibration: replace each
    statistic ``t`` by ``sum_(t)`` so every process scores the statistics of all of them.

    >>> import torch, prunekit as pk
    >>> class MaxWeight:
    ...     needs = frozenset({"weights"})
    ...     def reset(self): pass
    ...     def observe(self, layer, activation, gradient): pass
    ...     def score(self, layer):
    ...         return layer.weight_rows().abs().amax(dim=1)
    >>> class MaxWeightPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_criteria(self):
    ...         return [pk.Spec("max_weight", MaxWeight, "largest absolute weight")]
    >>> with pk.registered(MaxWeightPlugin()):
    ...     sorted(pk.get("criterion", "max_weight").needs)
    ['weights']
    """


@hookspec
def prunekit_task_losses() -> list[Spec]:
    """Return task losses: ``factory(**args)`` builds ``loss(logits, batch) -> scalar Tensor``.

    ``batch`` is the collated batch as a dict: ``image`` (N×C×H×W float) and ``target`` (N×H×W
    class indices for segmentation, N class indices for classification), plus whatever else the
    dataset provides.

    >>> import torch, prunekit as pk
    >>> import torch.nn.functional as F
    >>> class Focal:
    ...     @pk.hookimpl
    ...     def prunekit_task_losses(self):
    ...         def build(gamma=2.0):
    ...             def loss(logits, batch):
    ...                 logp = F.log_softmax(logits, 1).gather(1, batch["target"][:, None])
    ...                 return (-(1 - logp.exp()) ** gamma * logp).mean()
    ...             return loss
    ...         return [pk.Spec("focal", build, "focal loss")]
    >>> with pk.registered(Focal()):
    ...     loss = pk.get("task_loss", "focal", gamma=0.0)
    ...     round(float(loss(torch.zeros(1, 2, 1, 1), {"target": torch.zeros(1, 1, 1, dtype=torch.long)})), 4)
    0.6931
    """


@hookspec
def prunekit_distillation_losses() -> list[Spec]:
    """Return distillation losses: ``factory(**args)`` builds an ``nn.Module``.

    Its ``taps`` attribute lists the module paths whose outputs it needs (``None``: the
    traversal's defaults, ``()``: logits only). ``forward(student, teacher)`` receives two
    :class:`prunekit.Outputs` (``.logits`` and ``.features``, a dict path -> tensor) and returns
    a scalar. Parameters it owns (e.g. 1×1 adapters) are trained with the student and never
    exported. The teacher is frozen; never modify its outputs in place.

    >>> import torch, prunekit as pk
    >>> import torch.nn.functional as F
    >>> class LogitMSE(torch.nn.Module):
    ...     taps = ()
    ...     def forward(self, student, teacher):
    ...         return F.mse_loss(student.logits, teacher.logits)
    >>> class LogitMSEPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_distillation_losses(self):
    ...         return [pk.Spec("logit_mse", LogitMSE, "MSE between logits")]
    >>> with pk.registered(LogitMSEPlugin()):
    ...     pk.get("distillation", "logit_mse").taps
    ()
    """


@hookspec
def prunekit_datasets() -> list[Spec]:
    """Return datasets: ``factory(**args)`` builds a :class:`prunekit.DataSplits`.

    ``DataSplits(train, val, n_classes, in_channels, class_names, task)`` holds two map-style
    datasets whose items are dicts with ``image`` (C×H×W float) and ``target`` (H×W int64 class
    indices for segmentation, an int64 class index for classification) — or tuples
    ``(image, target)``; ``task`` names the task plugin that scores them. Nothing may be
    downloaded: generate the data or read it from local folders.

    >>> import torch, prunekit as pk
    >>> class Blank(torch.utils.data.Dataset):
    ...     def __len__(self): return 4
    ...     def __getitem__(self, i):
    ...         return {"image": torch.zeros(1, 8, 8), "target": torch.zeros(8, 8, dtype=torch.long)}
    >>> class BlankPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_datasets(self):
    ...         build = lambda: pk.DataSplits(Blank(), Blank(), n_classes=2, in_channels=1, task="segmentation")
    ...         return [pk.Spec("blank", build, "all zeros")]
    >>> with pk.registered(BlankPlugin()):
    ...     len(pk.get("dataset", "blank").train)
    4
    """


@hookspec
def prunekit_loggers() -> list[Spec]:
    """Return loggers: ``factory(run_dir, **args)`` builds an object with ``log(record)``
    and ``close()``. Records are flat dicts with an ``event`` key (``step``, ``epoch``,
    ``summary``, …) and numbers.

    >>> import prunekit as pk
    >>> class Collect:
    ...     def __init__(self, run_dir): self.records = []
    ...     def log(self, record): self.records.append(record)
    ...     def close(self): pass
    >>> class CollectPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_loggers(self):
    ...         return [pk.Spec("collect", Collect, "keeps records in memory")]
    >>> with pk.registered(CollectPlugin()):
    ...     logger = pk.get("logger", "collect", run_dir=".")
    ...     logger.log({"event": "step", "step": 1}); logger.records
    [{'event': 'step', 'step': 1}]
    """


@hookspec
def prunekit_tasks() -> list[Spec]:
    """Return tasks: ``factory()`` builds an object with the :class:`prunekit.plugin.protocols.Task`
    attributes — ``name``, ``best_metric`` (higher is better; it picks the best epoch),
    ``best_label``, ``default_loss`` (task-loss name -> weight), ``metric(n_classes, device)``
    (a fresh :class:`prunekit.plugin.protocols.Metric`: ``update(logits, batch)``, a ``state`` tensor of
    sums that processes add up, ``compute() -> dict``) and ``report_rows(baseline, pruned,
    class_names)``; optionally ``class_metric``, ``default_criterion`` (criterion name ->
    weight, what a run of the task ranks by when its config names no criteria) and
    ``calibration_loss(logits, batch)`` (what gradient criteria differentiate).

    >>> import torch, prunekit as pk
    >>> class Agreement:                              # share of samples whose argmax matches
    ...     def __init__(self):
    ...         self.state = torch.zeros(2)
    ...     def update(self, logits, batch):
    ...         self.state += torch.tensor([(logits.argmax(1) == batch["target"]).sum(), len(logits)])
    ...     def compute(self):
    ...         return {"agreement": float(self.state[0] / self.state[1])}
    >>> class Ranking:
    ...     name, best_metric, best_label = "ranking", "agreement", "agreement"
    ...     default_loss = {"cross_entropy": 1.0}
    ...     def metric(self, n_classes, device):
    ...         return Agreement()
    ...     def report_rows(self, baseline, pruned, class_names):
    ...         return [["agreement", f"{baseline['agreement']:.2f}", f"{pruned['agreement']:.2f}", ""]]
    >>> class RankingPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_tasks(self):
    ...         return [pk.Spec("ranking", Ranking, "argmax agreement")]
    >>> with pk.registered(RankingPlugin()):
    ...     metric = pk.get("task", "ranking").metric(2, "cpu")
    ...     metric.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), {"target": torch.tensor([1, 1])})
    ...     metric.compute()
    {'agreement': 0.5}
    """


@hookspec
def prunekit_presets() -> list[Spec]:
    """Return presets: ``factory()`` builds a mapping of ``pruning`` settings that a config's
    ``pruning.preset`` puts beneath its own (the config's keys win, mappings merge key by key).
    The built-in ``default`` preset holds the settings of a config that names none.

    >>> import prunekit as pk
    >>> class Gentle:
    ...     @pk.hookimpl
    ...     def prunekit_presets(self):
    ...         settings = {"criterion": {"weights": {"weight_norm": 1.0}}, "layer_limit_percent": 50}
    ...         return [pk.Spec("gentle", lambda: settings, "half of any layer at most")]
    >>> with pk.registered(Gentle()):
    ...     config = pk.load_config({"pruning": {"preset": "gentle", "layer_limit_percent": 60}})
    >>> config.pruning.layer_limit_percent, config.pruning.criterion.weights
    (60.0, {'weight_norm': 1.0})
    """


@hookspec
def prunekit_runtimes() -> list[Spec]:
    """Return runtimes, where pruned models are deployed: ``factory()`` builds a
    :class:`prunekit.plugin.Runtime`. ``pruning.runtime`` or ``prune_to(runtime=…)`` names one; the
    latency table, ``target_speedup``, the alignment and the report then measure in it.

    >>> import torch, prunekit as pk
    >>> from prunekit.plugin import eager
    >>> class Traced:                                 # TorchScript, as some users deploy
    ...     name, times_layers = "traced", True
    ...     available = lambda self, device: None     # or why it cannot run on device here
    ...     version = lambda self: torch.__version__  # latency tables are cached per version
    ...     alignment = lambda self, device: 16       # the channel multiple it runs fast
    ...     def prepare(self, model, example):        # a call runs one forward, done when it returns
    ...         return eager(torch.jit.trace(model, example), example)
    >>> class TracedPlugin:
    ...     @pk.hookimpl
    ...     def prunekit_runtimes(self):
    ...         return [pk.Spec("traced", Traced, "TorchScript, traced")]
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 40, 3), torch.nn.ReLU(), torch.nn.Conv2d(40, 2, 1))
    >>> with pk.registered(TracedPlugin()):
    ...     pk.prune_to(net, torch.zeros(1, 3, 8, 8), percent=50, runtime="traced").model[0].out_channels
    16
    """


@hookspec
def prunekit_unavailable() -> dict[str, str]:
    """Return what this plugin would register but cannot here, and why: a name prefix (a kind
    and a prefix, ``"model torchvision."``) mapped to the reason (a package that does not
    import, and its error). Asking for such a name then says why instead of "unknown".

    >>> import prunekit as pk
    >>> class NeedsFancy:
    ...     @pk.hookimpl
    ...     def prunekit_unavailable(self):
    ...         return {"model fancy.": "package 'fancy' does not import (No module named 'fancy')"}
    >>> with pk.registered(NeedsFancy()):
    ...     try:
    ...         pk.get("model", "fancy.net")
    ...     except pk.PluginError as error:
    ...         print(error)
    model 'fancy.net' is not available: package 'fancy' does not import (No module named 'fancy')
    """
