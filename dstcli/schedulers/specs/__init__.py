"""One torch-free module per method family: its options dataclass and its registration."""
