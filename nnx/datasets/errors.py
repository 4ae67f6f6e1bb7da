"""The one exception the datasets package raises for bad files and failed downloads."""

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data set file is missing, corrupt or could not be downloaded."""
