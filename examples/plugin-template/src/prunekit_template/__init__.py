"""A template prunekit plugin package: copy it, rename it, keep what you need.

Every module is one plugin, registered through the ``prunekit`` entry-point group in
``pyproject.toml``. Each refuses to load against a hook contract it was not written for.
"""

import prunekit

SUPPORTED_HOOK_VERSION = 1
if prunekit.HOOK_VERSION != SUPPORTED_HOOK_VERSION:
    raise ImportError(
        f"prunekit-plugin-template was written for prunekit's hook contract {SUPPORTED_HOOK_VERSION}, "
        f"this prunekit has {prunekit.HOOK_VERSION}"
    )
