"""Image-quality check: measurements, lesion/skin regions, scores and retake tips."""
