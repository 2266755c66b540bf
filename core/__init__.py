"""What the entry points share: runtime setup, gin wiring, the train/eval roots."""
