"""artefact: recognise the exact catalogued object in a new photo, on device and offline."""

__version__ = "0.1.0"
