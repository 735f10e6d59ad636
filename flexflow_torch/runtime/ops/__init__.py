"""FFModel's operator methods, one mixin per family."""
