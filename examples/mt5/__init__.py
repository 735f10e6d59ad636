"""mT5 English<->Sinhala translation example (FlexFlow's flagship workflow)."""
