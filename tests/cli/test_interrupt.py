"""GracefulInterrupt: the first SIGINT/SIGTERM asks Trainer for a checkpoint and a stop, the second exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from peft_dor.training.interrupt import GracefulInterrupt

from .conftest import command_env


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_checkpoints_and_stops_at_the_step_boundary(tmp_path, number):
    interrupt = GracefulInterrupt()
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")
    state, control = TrainerState(), TrainerControl()
    before = signal.getsignal(number)
    with interrupt.installed():
        state.global_step = 7
        interrupt.on_step_end(args, state, control)
        assert not control.should_save and interrupt.stopped_at is None  # no signal yet: nothing changes
        os.kill(os.getpid(), number)  # handled: no KeyboardInterrupt, no exit
        state.global_step = 8
        interrupt.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop and interrupt.stopped_at == 8
    assert interrupt.exit_code == 128 + number
    assert signal.getsignal(number) == before  # handlers restored
    interrupt.on_epoch_end(args, state, control)
    assert not control.should_save  # the epoch-end save of the same step is not repeated


def test_second_sigint_exits_at_once(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, time
        from peft_dor.training.interrupt import GracefulInterrupt
        with GracefulInterrupt().installed():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        print("not reached")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=command_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 130 and "not reached" not in proc.stdout
    assert "Second SIGINT: exiting now" in proc.stderr
