"""Built-in prunekit plugins, registered through the ``prunekit`` entry-point group like any other."""
