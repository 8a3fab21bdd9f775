"""A template prunekit plugin package: copy it, rename it, keep what you need.

Every module is one plugin, registered through the ``prunekit`` entry-point group in
``pyproject.toml``. Each refuses to load against a hook contract it was not written for.
"""

from prunekit.plugin import HOOK_VERSION

SUPPORTED_HOOK_VERSION = 2
if HOOK_VERSION != SUPPORTED_HOOK_VERSION:
    raise ImportError(
        f"prunekit-plugin-template was written for prunekit's hook contract {SUPPORTED_HOOK_VERSION}, "
        f"this prunekit has {HOOK_VERSION}"
    )
