"""Task losses: what the student is trained on."""
