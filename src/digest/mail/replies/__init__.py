"""What comes back: bounces, complaints and auto-replies read and recorded."""
