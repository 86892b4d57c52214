"""dlbook: the experiment library behind the executable textbook on how deep networks train and generalize."""

__version__ = "0.1.0"
