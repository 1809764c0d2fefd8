#!/usr/bin/env python
# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""``peft-dor protocol`` as a script (methods x datasets x seeds, resumable, then the tables); see docs/protocol.md."""

import sys

from peft_dor.cli import main

if __name__ == "__main__":
    sys.exit(main(["protocol", *sys.argv[1:]]))
