"""Tests of the embedded FlexFlow runtime (a package, so module names stay unique
beside the other test folders)."""
