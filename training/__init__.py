"""Reading labelled data, fitting, evaluating, and the `crimetag` command line."""
