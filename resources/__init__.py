"""Small files the package ships (read with importlib.resources.files('ptychopinn_plugin.resources'))."""
