"""histo's default plugins. Each module registers through the same hooks a third-party package uses."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "histo.plugins.readers",
    "histo.plugins.tissue",
    "histo.plugins.extractors",
    "histo.plugins.models",
    "histo.plugins.paper",
    "histo.plugins.baselines",
    "histo.plugins.tasks",
    "histo.plugins.method",
    "histo.plugins.classical",
    "histo.plugins.stages",
)
