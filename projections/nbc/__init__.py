"""Next best contact: rule files, the engine in the fold, its state and trigger documents."""
