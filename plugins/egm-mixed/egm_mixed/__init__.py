"""egm-mixed: product (continuous × discrete) state spaces, paths and generators for egm-framework,
composed **by registry name** from whatever continuous and discrete components are installed, plus
mixed benchmark energies (GB-RBM, joint MoG, joint DW-4).

Nothing here imports a modality plugin: every part is resolved through the
:class:`~egm_framework.registry.Registry` the core passes to factories that declare a ``registry``
parameter.
"""

from .generator import ProductGenerator
from .path import ProductPath
from .space import ProductSpace

__all__ = ["ProductSpace", "ProductPath", "ProductGenerator"]
