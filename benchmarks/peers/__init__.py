"""Side by side with the tracing peer (nobuco): trained models, torch → Keras on both sides."""
