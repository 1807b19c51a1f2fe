"""Built-in fdseg backbones, registered through the ``fdseg`` entry point group."""
