"""Hardening recipes, one module each behind the `Recipe` protocol."""
from . import at, fixer, gda_brelu, idfr, patch_ft  # noqa: F401  (registers)
from .base import DEFAULT_RECIPE, RECIPES, Recipe, apply_overrides, get_recipe, load_recipe_config, recipes_dir

__all__ = ["DEFAULT_RECIPE", "RECIPES", "Recipe", "apply_overrides", "get_recipe", "load_recipe_config", "recipes_dir"]
