"""Feature-bag files: histo's own, CLAM's and TRIDENT's, read alike; shards for streaming.

Not a plugin kind: the extract stage writes with it, training and evaluation stages read with it.
"""

from .bag import FeatureBag
from .layout import find_bags
from .read import read_bag
from .shards import iter_shard, write_shards
from .writer import BagWriter, write_bag

__all__ = ["BagWriter", "FeatureBag", "find_bags", "iter_shard", "read_bag", "write_bag", "write_shards"]
