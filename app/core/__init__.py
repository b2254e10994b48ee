"""Small building blocks shared by the feature packages."""
