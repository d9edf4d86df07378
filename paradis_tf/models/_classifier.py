"""SplitClassifier: what the classifier families share beyond their graph."""

from __future__ import annotations

from paradis_tf.training.split_model import SplitModel


class SplitClassifier(SplitModel):
    """A SplitModel built from constructor arguments (keras-hub style).

    Subclasses build their graph in ``__init__`` and pass the arguments that
    rebuild it as ``architecture``; ``get_config`` returns them, so
    ``from_config`` is ``cls(**config)``.
    """

    def __init__(self, inputs, outputs, switches, architecture: dict, **kwargs):
        super().__init__(inputs, outputs, switches, **kwargs)
        self._architecture = dict(architecture)

    @property
    def architecture(self) -> dict:
        """The constructor arguments (switches aside) that rebuild this model."""
        return dict(self._architecture)

    def get_config(self):
        config = super().get_config()
        config.update(self._architecture)
        config["switches"] = self.switches.get_config()
        return config
