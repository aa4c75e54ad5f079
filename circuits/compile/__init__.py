"""Reverse compilation: a circuit as annotated, executable Python, with measured faithfulness.

    emit(circuit)                 -> EmittedModule (code + large constants); .write(path)
    verify(path, model, data)     -> R², Pearson r and top-image agreement, per emitted neuron
    record_faithfulness(path, report, data) -> write the numbers into the module's FAITHFULNESS block
    simplify(circuit, motifs, model, data) -> Simplified: families and unions collapsed where measurement
                                     keeps every changed neuron within 0.01 R² of the literal form
"""

from circuits.compile.collapse import Simplified, simplify
from circuits.compile.faithfulness import record_faithfulness, verify
from circuits.compile.layout import EmittedModule, emit

__all__ = ["EmittedModule", "Simplified", "emit", "record_faithfulness", "simplify", "verify"]
