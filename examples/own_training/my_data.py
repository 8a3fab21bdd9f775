"""Your data as a function the config names: ``data: {factory: "my_data:loaders", args: {...}}``.

It returns ``(train, val)``: any iterables of batches — here DataLoaders over generated eye images
yielding dicts with ``image`` and ``target`` (tuples ``(image, target)`` work as well).
"""

from torch.utils.data import DataLoader

import prunekit as pk


def loaders(size=(64, 96), n_train=384, n_val=128, batch_size=16):
    splits = pk.get("dataset", "synthetic_eyes", size=list(size), n_train=n_train, n_val=n_val)
    return DataLoader(splits.train, batch_size=batch_size, shuffle=True), DataLoader(splits.val, batch_size=32)
