"""The names of the detector and crop-classifier backends (``detect.backend``,
``detect.classifier.backend``), apart from the code that builds them, so the modules that only
ask which backend is which (the mirror, the ontology) need not import the detectors."""

CLOSED_SET = ("nanodet",)
OPEN_VOCABULARY = ("owlv2", "owlvit", "grounding-dino")
DETECTOR_BACKENDS = CLOSED_SET + OPEN_VOCABULARY
CLASSIFIER_BACKENDS = ("siglip", "clip")
