"""Parameters: start values, units, bounds and the fitting-space transforms."""

from .context import active_values, parameter_values
from .parameter import VALUE_MODES, Parameter, ParamSpec, Role, p
from .transforms import Compose, Exp, Identity, Logistic, Pow10, Transform, UnitMap

__all__ = [
    "VALUE_MODES",
    "Compose",
    "Exp",
    "Identity",
    "Logistic",
    "ParamSpec",
    "Parameter",
    "Pow10",
    "Role",
    "Transform",
    "UnitMap",
    "active_values",
    "p",
    "parameter_values",
]
