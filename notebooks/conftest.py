"""pytest (nbmake) runs every tutorial notebook here; see pyproject's [tool.pytest.ini_options].

The kernels nbmake starts inherit this process's environment. One intra-op thread: the tiny CPU model's matmuls
are too small to gain from a second thread, and two threads fighting over 2 shared cores made steps 5-10x slower
(the same setting tests/conftest.py uses for the unit tests). Set OMP_NUM_THREADS yourself to override it.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
