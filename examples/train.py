#!/usr/bin/env python
# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""``peft-dor train`` as a script, so ``python examples/train.py --demo`` and ``accelerate launch examples/train.py``
keep working. Every option is documented by ``python examples/train.py --help`` and in docs/training.md."""

import sys

from peft_dor.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
