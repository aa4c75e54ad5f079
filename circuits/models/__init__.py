"""Model specs: one parser, used by every command, that turns a string into a loaded model.

Accepted specs (see :func:`load`):

- ``zoo:NAME``                 a model shipped in the package (``circuits zoo list``)
- ``planted:NAME``             a network with known circuits (``circuits planted list``)
- ``package.module:attr``      an importable ``nn.Module`` or zero-argument factory
- ``path/to/file.py:attr``     the same, from a file
- ``FILE.pt2``                 a ``torch.export`` archive
"""

from circuits.models.loaded import LoadedModel, weights_hash
from circuits.models.spec import load, load_state_dict_file, parse_input_shape

__all__ = ["LoadedModel", "load", "load_state_dict_file", "parse_input_shape", "weights_hash"]
