"""The pipelines: reading captures once and running the detections over them.

``scan`` (files in, alerts out), ``train`` (a baseline in, a model out), ``live``
(a mirror port or a stream in, alerts as they happen) and ``commands`` (the scan
and train commands' work, from their options to their files). The nightly run
(detector/nightly/) and the Dask scale-out (detector/distributed/) build on
``scan``. The detections themselves are in detector/detect/.
"""
