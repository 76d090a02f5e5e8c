import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def node(tmp_path, keys):
    """Temporary central stores, a sync store, node keys and a directory (``matcherkit``)."""
    from matcherkit import make_node

    made = make_node(tmp_path, keys)
    yield made
    made.store.close()
    made.data.close()
