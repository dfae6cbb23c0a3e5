# The search suite's scripted inference API: the model is the widget's outside world.
from tests.search.conftest import fake_inference, fake_inference_server

__all__ = ["fake_inference", "fake_inference_server"]
