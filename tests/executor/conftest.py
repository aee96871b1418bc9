import pytest
import torch

# Tiny models are all per-op overhead; one thread avoids spin-waiting against other work on
# a 2-core machine and keeps timings of the suite stable.
torch.set_num_threads(1)


@pytest.fixture(params=["llama", "qwen2", "mistral", "gpt2"])
def family(request):
    return request.param
