"""``python -m peft_dor <command>`` (and ``accelerate launch -m peft_dor train ...``): the ``peft-dor`` command."""

import sys

from peft_dor.cli import main

if __name__ == "__main__":
    sys.exit(main())
