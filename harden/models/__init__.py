"""One registry of architectures: harden's built-ins, any timm name, or `package.module:callable`."""
from .registry import (Classifier, ModelSpec, create_model, from_module, is_known_arch, list_builtin, register_model,
                       taps_of)

__all__ = ["Classifier", "ModelSpec", "create_model", "from_module", "is_known_arch", "list_builtin", "register_model",
           "taps_of"]
