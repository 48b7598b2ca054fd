"""The helpers behind `histo.testing`: synthetic inputs, the component contract check, in-process runs.

Import them from `histo.testing`; these modules import torch only inside their functions, so that the
pytest plugin costs nothing in sessions that do not use them.
"""
