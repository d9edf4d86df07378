"""The private base of the per-device relayouts (PixelShuffle, Upsample2D):
layers that move or interpolate values within each device's own tensor, on
plain ``(B, H, W, C)`` or partial-output ``(B, H, W, D, C)`` inputs."""

from __future__ import annotations

from paradis_tf.layers._base import SwitchedLayer
from paradis_tf.layers._cost import LayerCost


class Relayout(SwitchedLayer):
    """Shape checks shared by the relayouts, and their cost: none."""

    def _check_layout(self, input_shape: tuple, switch) -> None:
        """Refuses a rank other than 4 or 5, and a partial-output device axis
        (-2) that is not the switch's device count."""
        owner = f"{type(self).__name__} '{self.name}'"
        if len(input_shape) not in (4, 5):
            raise ValueError(
                f"{owner}: expects inputs (B, H, W, C) or partial outputs (B, H, W, D, C), "
                f"received input shape {input_shape}."
            )
        if len(input_shape) == 5 and switch is not None:
            index = self.switch_index(switch)
            d = self.switches[index].num_devices
            if input_shape[-2] is not None and input_shape[-2] != d:
                raise ValueError(
                    f"{owner}: switch '{self.switches[index]}' has {d} devices but the input's "
                    f"device axis (-2) has {input_shape[-2]}."
                )
        else:
            self._check_switch(switch)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        # A relayout or an interpolation (a few adds per output value, not
        # counted, as bias additions are not): no parameters, no
        # multiply-accumulates, no traffic.
        d = self.switches[self.switch_index(switch)].num_devices
        return LayerCost.local([0] * d, [0] * d)

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        return 0, 0
