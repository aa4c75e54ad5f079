"""Reverse compilation: a circuit as annotated, executable Python, with measured faithfulness.

    emit(circuit)                 -> EmittedModule (code + large constants); .write(path)
    verify(path, model, data)     -> R², Pearson r and top-image agreement, per emitted neuron
    record(path, report, data)    -> write the numbers into the module's FAITHFULNESS block
"""

from circuits.compile.emit import EmittedModule, emit
from circuits.compile.faithfulness import record, verify

__all__ = ["EmittedModule", "emit", "record", "verify"]
