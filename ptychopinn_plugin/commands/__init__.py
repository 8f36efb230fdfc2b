"""One module per `ptychopinn` sub-command; each exposes `register(subparsers)`."""
