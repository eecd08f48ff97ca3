"""Shared test setup: one torch thread per process (two processes with two threads each on a
2-core machine slow each other down many times over)."""
import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # test-only helpers such as optim_reference
