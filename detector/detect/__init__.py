"""The detections: one declaration per rule (rules/, each with its check), the
isolation-forest model (model/), what a check is given (context.py) and what
outside addresses are called (names.py). The pipelines that run them over
captures are in detector/pipelines/."""
