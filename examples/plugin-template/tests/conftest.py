pytest_plugins = ["prunekit.testing"]  # the plugin_manager fixture
