"""Small reference models trained on data shipped with installed packages (nothing is downloaded)."""
